"""What early termination saved, and what a sweep is expected to cost.

Definitions (docs/metrics.md repeats them):
- GPU-seconds used by a run = GPUs requested x seconds it ran.
- A stopped run's planned iterations come from, in order: the sweep's `iterations_per_run`, the
  run's own `epochs`-like parameter, a fixed `--epochs N` in the command, `early_terminate.max_iter`.
- Iterations saved = planned - trained (never below 0), for EarlyStopped runs only.
- GPU-seconds saved = iterations saved x the run's own seconds per iteration x its GPUs, where the
  pace is measured between its first and last metric values (start-up excluded) when it has two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .bands import HyperbandRule
from .config import EPOCH_NAMES, SweepConfig, fixed_epochs_in_command


def planned_iterations(config: SweepConfig, params: Mapping[str, Any]) -> tuple[int | None, str]:
    """How many iterations this run would train if nothing stopped it, and where that comes from."""
    if config.iterations_per_run:
        return config.iterations_per_run, "iterations_per_run"
    for name in EPOCH_NAMES:
        v = params.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1:
            return int(v), f"parameter {name}"
    fixed = fixed_epochs_in_command(config.command)
    if fixed is not None:
        return fixed[1], f"command[{fixed[0]}]"
    if config.hyperband is not None and config.hyperband.max_iter is not None:
        return config.hyperband.max_iter, "early_terminate.max_iter"
    return None, "unknown (set iterations_per_run)"


@dataclass(frozen=True)
class Usage:
    iterations_trained: int = 0
    iterations_saved: int = 0
    gpu_seconds_used: float = 0.0
    gpu_seconds_saved: float = 0.0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            self.iterations_trained + other.iterations_trained,
            self.iterations_saved + other.iterations_saved,
            self.gpu_seconds_used + other.gpu_seconds_used,
            self.gpu_seconds_saved + other.gpu_seconds_saved,
        )


def run_usage(iterations: int, seconds: float, gpus: float, planned: int | None, early_stopped: bool,
              seconds_per_iteration: float | None = None) -> Usage:
    used = seconds * gpus
    if not early_stopped or planned is None or iterations <= 0:
        return Usage(iterations, 0, used, 0.0)
    saved = max(planned - iterations, 0)
    pace = seconds / iterations if seconds_per_iteration is None else seconds_per_iteration
    return Usage(iterations, saved, used, saved * pace * gpus)


@dataclass(frozen=True)
class BudgetEstimate:
    runs: int
    iterations_per_run: int
    without_early_termination: int
    with_early_termination: int
    survivors_per_band: list[tuple[int, int]]  # (band, runs still training after it)

    @property
    def saved_fraction(self) -> float:
        full = self.without_early_termination
        return 0.0 if full == 0 else 1 - self.with_early_termination / full


def estimate_budget(rule: HyperbandRule | None, runs: int, iterations_per_run: int) -> BudgetEstimate:
    """Iterations for `runs` runs of `iterations_per_run`, with and without early termination.

    The estimate assumes runs advance in lockstep with distinct values: at a band reached by m
    runs, the rule keeps the int(m / eta) + 1 best. Runs that start later face more finished
    competitors, so a real sweep is usually stopped harder than this."""
    full = runs * iterations_per_run
    if rule is None:
        return BudgetEstimate(runs, iterations_per_run, full, full, [])
    alive, done, total, survivors = runs, 0, 0, []
    for band in rule.bands_up_to(iterations_per_run - 1):
        total += alive * (band - done)
        done = band
        alive = min(alive, int(alive / rule.eta) + 1)
        survivors.append((band, alive))
    total += alive * (iterations_per_run - done)
    return BudgetEstimate(runs, iterations_per_run, full, total, survivors)
