"""Every run of one sweep: history rows and ends in, run states and stop decisions out.

The one engine behind the operator, the local runner and `kubesweep replay`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from .config import SweepConfig
from .hyperband import Hyperband, RunCheckpoint, StopDecision
from .rows import metric_value

PENDING, RUNNING, SUCCEEDED, EARLY_STOPPED, FAILED = "Pending", "Running", "Succeeded", "EarlyStopped", "Failed"
ENDED = (SUCCEEDED, EARLY_STOPPED, FAILED)


@dataclass
class RunStats:
    name: str
    state: str = RUNNING
    reason: str | None = None  # why it ended: "band 6: 0.45 > 0.41", "Completed", "OOMKilled (exit code 137)", ...
    iterations: int = 0  # finite values of the sweep metric
    rows: int = 0  # history rows seen, with or without the metric
    latest: float | None = None
    best: float | None = None
    stop: StopDecision | None = None
    first_at: float | None = None  # when its first and latest metric values arrived (caller's clock)
    last_at: float | None = None
    first_iteration: int = 0  # the iteration count at first_at (not 1 after a restore)

    def seconds_per_iteration(self) -> float | None:
        """The run's own training pace, start-up excluded: time between its first and last values."""
        seen = self.iterations - self.first_iteration
        if seen >= 1 and self.first_at is not None and self.last_at is not None:
            return (self.last_at - self.first_at) / seen
        return None


class SweepTracker:
    def __init__(self, config: SweepConfig):
        self.config = config
        self.metric = config.metric.name if config.metric else None
        self.maximize = bool(config.metric and config.metric.maximize)
        self.hyperband = (
            Hyperband(config.hyperband, self.metric, self.maximize)
            if config.hyperband is not None and self.metric is not None else None
        )
        self.runs: dict[str, RunStats] = {}
        self.keys_seen: set[str] = set()

    def stats(self, run: str) -> RunStats:
        """The run's record, created (Running) on first use."""
        stats = self.runs.get(run)
        if stats is None:
            stats = self.runs[run] = RunStats(run)
        return stats

    def _better(self, a: float, b: float | None) -> bool:
        return b is None or (a > b if self.maximize else a < b)

    def row(self, run: str, row: Mapping[str, Any], at: float | None = None) -> list[StopDecision]:
        """One history row of `run` (it is running from its first row). Returns the runs it stops;
        rows of a run that has ended or been stopped are ignored."""
        stats = self.stats(run)
        if stats.state not in (PENDING, RUNNING):
            return []
        stats.state = RUNNING
        stats.rows += 1
        self.keys_seen.update(k for k in row if k != "run")
        value = metric_value(row, self.metric) if self.metric else None
        if value is None:
            return []
        stats.iterations += 1
        stats.latest = value
        if at is not None:
            if stats.first_at is None:
                stats.first_at, stats.first_iteration = at, stats.iterations
            stats.last_at = at
        if self._better(value, stats.best):
            stats.best = value
        if self.hyperband is None:
            return []
        decisions = self.hyperband.report(run, value)
        for d in decisions:
            stopped = self.runs[d.run]
            stopped.state, stopped.reason, stopped.stop = EARLY_STOPPED, d.short(), d
        return decisions

    def end(self, run: str, state: str, reason: str | None = None) -> None:
        """The run ended on its own: SUCCEEDED or FAILED (with a reason such as OOMKilled)."""
        assert state in (SUCCEEDED, FAILED), state
        stats = self.stats(run)
        if stats.state in ENDED:
            return  # e.g. the pod of a stopped run exits after SIGTERM: it stays EarlyStopped
        stats.state, stats.reason = state, reason
        if self.hyperband is not None:
            self.hyperband.end(run)

    def restore(self, run: str, stats: RunStats, band_values: list[float]) -> None:
        """Load a run from its durable record (operator restart)."""
        self.runs[run] = stats
        if self.hyperband is not None:
            self.hyperband.restore(run, RunCheckpoint(stats.iterations, band_values, stats.best, stats.state == RUNNING))

    def evaluate_all(self) -> list[StopDecision]:
        if self.hyperband is None:
            return []
        decisions = self.hyperband.evaluate_all()
        for d in decisions:
            s = self.runs[d.run]
            s.state, s.reason, s.stop = EARLY_STOPPED, d.short(), d
        return decisions

    def bands_reached(self) -> list[int]:
        """The bands (in iterations) materialised so far: every band any run has reached, and one more."""
        return self.hyperband.bands_reached() if self.hyperband else []

    def band_values(self, run: str) -> list[float]:
        return self.hyperband.checkpoint(run).band_values if self.hyperband else []

    def best_run(self) -> RunStats | None:
        """The run whose latest value is best: W&B ranks runs by their summary, the last value logged."""
        best = None
        for s in self.runs.values():
            if s.latest is not None and (best is None or self._better(s.latest, best.latest)):
                best = s
        return best

    def count(self, state: str) -> int:
        return sum(1 for s in self.runs.values() if s.state == state)

    def warnings(self) -> list[str]:
        """What a person should know about the collected metrics."""
        out = []
        if self.metric and self.runs and not any(s.iterations for s in self.runs.values()):
            seen = sorted(self.keys_seen - {"state"})
            if self.metric in self.keys_seen:
                out.append(f"metric {self.metric!r} was reported, but never as a finite number (NaN, inf, text or "
                           "true/false are not iterations), so nothing can be stopped")
                return out
            close = difflib.get_close_matches(self.metric, seen, n=1, cutoff=0.6)
            hint = f"; did the script mean {close[0]!r}?" if close else ""
            out.append(
                f"metric {self.metric!r} was never reported with a finite value by any run, so nothing can be "
                f"stopped; names reported: {', '.join(repr(k) for k in seen) or 'none'}{hint}"
            )
        return out

    def bands_for_display(self) -> list[int]:
        """All bands when bounded; otherwise those up to the longest run, plus the next one."""
        rule = self.config.hyperband
        if rule is None:
            return []
        if rule.bounded:
            return rule.bands_from_max_iter()
        longest = max((s.iterations for s in self.runs.values()), default=0)
        out = rule.bands_up_to(longest)
        nxt = next(b for b in rule.iter_bands() if b > longest)
        return out + [nxt]
