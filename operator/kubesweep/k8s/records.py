"""A run's durable record: the SweepRun status, written from and read back into engine state.

The status holds everything the stop rule needs (iteration count, the value at each band, best,
latest) plus rowsSeen: how many history rows of the run's log were consumed. After a restart the
log is read again from the start and the first rowsSeen rows are skipped, so no row is lost and
none is counted twice; rows newer than the last write are simply read again.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from ..engine.hyperband import StopDecision
from ..engine.tracker import RUNNING, RunStats

MAX_BAND_VALUES = 64


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def decision_status(d: StopDecision) -> dict[str, Any]:
    return {"band": d.band, "value": d.value, "threshold": d.threshold, "runsAtBand": d.runs_at_band,
            "iteration": d.iteration, "time": now_rfc3339()}


def run_status(stats: RunStats, bands: list[int], band_values: list[float], rows_seen: int,
               extra: Mapping[str, Any]) -> dict[str, Any]:
    """`band_values[i]` is the run's value at `bands[i]` (iterations)."""
    status: dict[str, Any] = {
        "state": stats.state,
        "iteration": stats.iterations,
        "rowsSeen": rows_seen,
        "bandValues": [{"band": b, "value": v} for b, v in zip(bands, band_values[:MAX_BAND_VALUES])],
        "latest": stats.latest,
        "best": stats.best,
        "reason": stats.reason,
        "message": stats.stop.message() if stats.stop else None,
        "decision": decision_status(stats.stop) if stats.stop else None,
    }
    status.update(extra)
    # Merge-patch semantics: a missing key keeps the stored value (e.g. a decision made before a restart).
    return {k: v for k, v in status.items() if v is not None}


def stats_from_status(name: str, status: Mapping[str, Any]) -> tuple[RunStats, list[float], int]:
    """(stats, band values, rowsSeen) from a stored SweepRun status."""
    state = status.get("state") or RUNNING
    if state == "Pending":
        state = RUNNING  # the tracker knows no Pending; a run without rows is simply not judged yet
    stats = RunStats(
        name=name, state=state, reason=status.get("reason"), iterations=int(status.get("iteration") or 0),
        rows=int(status.get("rowsSeen") or 0), latest=status.get("latest"), best=status.get("best"),
    )
    bands = [b["value"] for b in sorted(status.get("bandValues") or [], key=lambda b: b["band"])]
    return stats, bands, stats.rows
