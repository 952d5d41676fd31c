"""W&B's Hyperband stopping rule, evaluated incrementally.

The published rule, after every reported value, re-scans every run's history: for each band b it
sorts the b-th values of all runs that have at least b (any state, including ended and stopped
runs) and takes the element at index int(n / eta) as the threshold; each running run, judged at
the highest band it has reached (strict: its b-th value; otherwise its best so far), is stopped
when its value is worse than that threshold. Ties survive.

Here the same decisions cost O(log n) per report: each band keeps its values sorted, and the
running runs judged at that band sorted by the value they are judged on. A report changes one
band's threshold at most (the band the run just reached), so only that band's worst candidates
need a look, and each run is stopped at most once. Values are kept sign-adjusted so that lower is
always better. `kubesweep.engine.reference` holds the rule as written; tests and the benchmark
check that both decide the same.
"""
from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import NamedTuple

from .bands import HyperbandRule


class StopDecision(NamedTuple):
    """Why a run was stopped: everything a person needs to check the arithmetic.
    (A NamedTuple: immutable, and cheap to make on the hot path.)"""

    run: str
    band: int  # the band, in iterations
    iteration: int  # the run's iteration count when stopped
    value: float  # the value it was judged on (its band-th value if strict, else its best so far)
    threshold: float  # the band's threshold, in the metric's own units
    runs_at_band: int  # how many runs' band-th values set the threshold
    metric: str
    goal: str
    strict: bool
    eta: float

    def short(self) -> str:
        """One phrase for a table column: `band 6: 0.452 > 0.41`."""
        op = ">" if self.goal == "minimize" else "<"
        return f"band {self.band}: {self.value:.4g} {op} {self.threshold:.4g}"

    def message(self) -> str:
        judged = f"{self.metric} at iteration {self.band}" if self.strict else f"best {self.metric} so far"
        worse = "above" if self.goal == "minimize" else "below"
        rank = int(self.runs_at_band / self.eta) + 1
        return (
            f"{judged} = {self.value:.6g} is {worse} the band-{self.band} threshold {self.threshold:.6g} "
            f"(the {_ordinal(rank)} best of {self.runs_at_band} runs' values at iteration {self.band}, eta {self.eta:g}); "
            f"stopped at iteration {self.iteration}"
        )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(slots=True)
class _Run:
    seq: int  # creation order; breaks ties between equal values deterministically
    next_band: int  # the iteration count at which it reaches its next band (0: no band left)
    count: int = 0
    best: float = math.inf  # signed: lower is better
    band_idx: int = -1  # highest band reached, as an index into bands
    judged: float = math.inf  # signed value this run is judged on at band_idx
    running: bool = True
    band_values: list[float] = field(default_factory=list)  # signed value at each band reached


@dataclass(frozen=True)
class RunCheckpoint:
    """What must be stored durably for a run so the rule can be rebuilt after a restart."""

    iteration: int
    band_values: list[float]  # the run's value at each band it reached, in the metric's own units
    best: float | None
    running: bool


class Hyperband:
    def __init__(self, rule: HyperbandRule, metric: str, maximize: bool):
        self.rule = rule
        self.metric = metric
        self.goal = "maximize" if maximize else "minimize"
        self._sign = -1.0 if maximize else 1.0
        self._bands: list[int] = []
        self._band_source = rule.iter_bands()
        self._exhausted = False
        self._values: list[list[float]] = []  # per band: sorted signed band-th values
        self._candidates: list[list[tuple[float, int, str]]] = []  # per band: running runs judged there
        self._runs: dict[str, _Run] = {}

    # -- bands ----------------------------------------------------------------------------------
    def band(self, j: int) -> int | None:
        """The j-th band, materialising unbounded bands only as far as runs get."""
        while len(self._bands) <= j and not self._exhausted:
            nxt = next(self._band_source, None)
            if nxt is None:
                self._exhausted = True
            else:
                self._bands.append(nxt)
                self._values.append([])
                self._candidates.append([])
        return self._bands[j] if j < len(self._bands) else None

    # -- events ---------------------------------------------------------------------------------
    def _run(self, run: str) -> _Run:
        r = self._runs.get(run)
        if r is None:
            r = self._runs[run] = _Run(seq=len(self._runs), next_band=self.band(0) or 0)
        return r

    def report(self, run: str, value: float) -> list[StopDecision]:
        """One finite value of the sweep metric from `run`. Returns the runs this stops."""
        r = self._runs.get(run) or self._run(run)
        if not r.running:
            return []
        signed = self._sign * value
        r.count += 1
        if signed < r.best:
            r.best = signed
        if r.count == r.next_band:  # the hot path (no band reached) ends at this comparison
            nxt = r.band_idx + 1
            self._uncandidate(run, r)
            insort(self._values[nxt], signed)
            r.band_values.append(signed)
            r.band_idx = nxt
            r.next_band = self.band(nxt + 1) or 0
            r.judged = signed if self.rule.strict else r.best
            insort(self._candidates[nxt], (r.judged, r.seq, run))
            return self._stop_worse(nxt)
        if not self.rule.strict and r.band_idx >= 0 and r.best < r.judged:
            # A better best-so-far only moves this run away from the threshold: nobody to stop.
            self._uncandidate(run, r)
            r.judged = r.best
            insort(self._candidates[r.band_idx], (r.judged, r.seq, run))
        return []

    def end(self, run: str) -> None:
        """The run finished, failed or crashed: it is no longer judged, but its values still count."""
        r = self._run(run)
        if r.running:
            self._uncandidate(run, r)
            r.running = False

    def _uncandidate(self, run: str, r: _Run) -> None:
        if r.running and r.band_idx >= 0:
            cands = self._candidates[r.band_idx]
            i = bisect_left(cands, (r.judged, r.seq, run))
            del cands[i]

    def threshold(self, j: int) -> float:
        vals = self._values[j]
        return vals[int(len(vals) / self.rule.eta)]

    def _stop_worse(self, j: int) -> list[StopDecision]:
        cands, vals = self._candidates[j], self._values[j]
        threshold = vals[int(len(vals) / self.rule.eta)]
        if not cands or cands[-1][0] <= threshold:
            return []  # the common case: nobody at this band is worse than the threshold
        stopped = []
        while cands and cands[-1][0] > threshold:
            judged, _, run = cands.pop()
            r = self._runs[run]
            r.running = False
            stopped.append(StopDecision(
                run=run, band=self._bands[j], iteration=r.count, value=self._sign * judged,
                threshold=self._sign * threshold, runs_at_band=len(self._values[j]),
                metric=self.metric, goal=self.goal, strict=self.rule.strict, eta=self.rule.eta,
            ))
        return stopped

    # -- durability -----------------------------------------------------------------------------
    def checkpoint(self, run: str) -> RunCheckpoint:
        r = self._run(run)
        best = None if r.count == 0 else self._sign * r.best
        return RunCheckpoint(r.count, [self._sign * v for v in r.band_values], best, r.running)

    def restore(self, run: str, cp: RunCheckpoint) -> None:
        """Load a run from its durable record (before any report for it). Call `evaluate_all` after
        restoring every run: thresholds may have moved while nobody was watching."""
        r = self._run(run)
        r.count = cp.iteration
        r.best = math.inf if cp.best is None else self._sign * cp.best
        for j, v in enumerate(cp.band_values):
            if self.band(j) is None:
                break
            signed = self._sign * v
            insort(self._values[j], signed)
            r.band_values.append(signed)
            r.band_idx = j
        r.next_band = self.band(r.band_idx + 1) or 0
        r.running = cp.running
        if r.running and r.band_idx >= 0:
            r.judged = r.band_values[-1] if self.rule.strict else r.best
            insort(self._candidates[r.band_idx], (r.judged, r.seq, run))

    def evaluate_all(self) -> list[StopDecision]:
        out = []
        for j in range(len(self._bands)):
            if self._values[j]:
                out += self._stop_worse(j)
        return out

    def bands_reached(self) -> list[int]:
        return list(self._bands)
