"""Replay recorded history through the engine and report what it decides.

EVENTS is JSON Lines in arrival order: `{"run": NAME, <metric keys>...}` is one history row;
`{"run": NAME, "state": "finished"|"failed"|"crashed"}` ends the run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from .config import SweepConfig
from .problems import ConfigError, Problem
from .tracker import FAILED, SUCCEEDED, SweepTracker

END_STATES = {"finished": (SUCCEEDED, "Completed"), "failed": (FAILED, "failed"), "crashed": (FAILED, "crashed")}


@dataclass(frozen=True)
class Event:
    run: str
    row: dict[str, Any] | None = None  # a history row, or None for an end event
    end: str | None = None  # finished | failed | crashed


def parse_events(lines: Iterable[str], source: str = "EVENTS") -> list[Event]:
    events = []
    try:
        numbered = list(enumerate(lines, start=1))
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(source, f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8")]) from None
    for n, line in numbered:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ConfigError([Problem(f"{source} line {n}", f"is not JSON ({exc}); each line must be one JSON object")]) from None
        events.append(event_from_object(obj, f"{source} line {n}"))
    return events


def event_from_object(obj: Any, where: str) -> Event:
    if not isinstance(obj, dict) or not isinstance(obj.get("run"), str) or not obj["run"]:
        raise ConfigError([Problem(where, 'must be an object with a "run" name, e.g. {"run": "a", "loss": 0.5}')])
    state = obj.get("state")
    row = {k: v for k, v in obj.items() if k not in ("run", "state")}
    if "state" in obj and (state not in END_STATES):
        raise ConfigError([Problem(f"{where}.state", f"{state!r} is not one of finished, failed, crashed")])
    if "state" in obj:
        # {"run", "state"} ends the run; with other keys it is the run's last row, then its end.
        return Event(obj["run"], row=row or None, end=state)
    return Event(obj["run"], row=row)


def replay(config: SweepConfig, events: list[Event]) -> dict[str, Any]:
    """The result as plain data (what `kubesweep replay --json` prints)."""
    tracker = SweepTracker(config)
    stopped_after: dict[str, int] = {}
    ignored: dict[str, int] = {}  # rows of runs that had already ended on their own
    for i, ev in enumerate(events):
        if ev.row is not None:
            stats = tracker.runs.get(ev.run)
            if stats is not None and stats.state in (SUCCEEDED, FAILED):
                ignored[ev.run] = ignored.get(ev.run, 0) + 1
            for d in tracker.row(ev.run, ev.row):
                stopped_after[d.run] = i
        if ev.end is not None:
            state, reason = END_STATES[ev.end]
            tracker.end(ev.run, state, reason)
    runs = {}
    for name, s in tracker.runs.items():
        stop = None
        if s.stop is not None:
            d = s.stop
            stop = {
                "after_event": stopped_after[name], "iteration": d.iteration, "band": d.band,
                "value": d.value, "threshold": d.threshold, "runs_at_band": d.runs_at_band, "reason": d.message(),
            }
        runs[name] = {
            "state": s.state, "reason": s.reason, "iterations": s.iterations,
            "latest": s.latest, "best": s.best, "stopped": stop,
        }
    best = tracker.best_run()
    return {
        "metric": tracker.metric,
        "goal": "maximize" if tracker.maximize else "minimize",
        "bands": tracker.bands_for_display(),
        "runs": runs,
        "best": None if best is None else {"run": best.name, "value": best.latest},
        "warnings": tracker.warnings() + ([] if events else ["the events file holds no events"])
        + [f"{n} row(s) of run {run!r} came after its end and were ignored" for run, n in ignored.items()],
    }
