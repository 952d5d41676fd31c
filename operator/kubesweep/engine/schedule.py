"""When a sweep starts runs, and when it is done: one rule for the operator and the local runner."""
from __future__ import annotations

from dataclasses import dataclass

from .config import SweepConfig

PHASE_RUNNING, PHASE_SUCCEEDED, PHASE_FAILED = "Running", "Succeeded", "Failed"


@dataclass(frozen=True)
class Progress:
    started: int  # runs created so far (any state)
    active: int  # runs pending or running
    failed: int  # runs that Failed (early-stopped runs are not failures)
    exhausted: bool = False  # the sampler has nothing more to propose (grid done)


@dataclass(frozen=True)
class Step:
    start: int  # how many new runs to start now
    phase: str
    reason: str


def run_cap(config: SweepConfig, grid_size: int | None, override: int | None = None) -> int | None:
    caps = [c for c in (override or config.run_cap, grid_size) if c is not None]
    return min(caps) if caps else None


def next_step(config: SweepConfig, progress: Progress, cap: int | None, parallelism: int | None = None) -> Step:
    """How many runs to start now, and the sweep's phase.

    The failure budget: once more than `max_failed_runs` runs have failed, no run is started (a
    broken image must not loop forever); the runs still going are left to end on their own."""
    if progress.failed > config.max_failed_runs:
        reason = (f"FailureBudgetExceeded: {progress.failed} runs failed, more than max_failed_runs "
                  f"{config.max_failed_runs}; no new runs are started")
        return Step(0, PHASE_FAILED, reason)
    budget = f"{progress.failed} of at most {config.max_failed_runs} failed runs"
    remaining = None if cap is None else max(cap - progress.started, 0)
    if progress.exhausted or remaining == 0:
        if progress.active:
            return Step(0, PHASE_RUNNING, f"all {progress.started} runs started; {progress.active} still going; {budget}")
        if progress.started and progress.failed == progress.started:
            return Step(0, PHASE_FAILED, f"AllRunsFailed: all {progress.started} runs failed")
        return Step(0, PHASE_SUCCEEDED, f"all {progress.started} runs ended; {budget}")
    free = max((parallelism or config.parallelism) - progress.active, 0)
    start = free if remaining is None else min(free, remaining)
    return Step(start, PHASE_RUNNING, f"{progress.active + start} runs going; {budget}")
