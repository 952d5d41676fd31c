"""Running a sweep on one machine: one local process per run."""
