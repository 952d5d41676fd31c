"""`kubesweep run`: the sweep on this machine, each run a local process, no cluster.

The same engine as the operator: rows parsed from each run's stdout go to the SweepTracker, and a
run it stops gets SIGTERM, then SIGKILL after the grace period. Every row and end is appended to
`events.jsonl` in the replay format, so `kubesweep replay` reproduces every decision.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..engine.command import build_argv
from ..engine.config import Loaded
from ..engine.hyperband import StopDecision
from ..engine.rows import parse_line
from ..engine.savings import Usage, planned_iterations, run_usage
from ..engine.schedule import Progress, next_step, run_cap
from ..engine.search import Result, make_sampler, sweep_size
from ..engine.tracker import EARLY_STOPPED, FAILED, RUNNING, SUCCEEDED, SweepTracker


@dataclass
class LocalRun:
    name: str
    index: int
    params: dict[str, Any]
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    ended: float | None = None
    exit_code: int | None = None
    planned: int | None = None
    stop_sent: bool = False
    interrupted: bool = False  # stopped by Ctrl-C, not by Hyperband and not by itself
    last_line: str = ""
    failure: str | None = None
    log: TextIO | None = field(default=None, repr=False)

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


class LocalSweep:
    def __init__(self, loaded: Loaded, sweep_file: Path, args: argparse.Namespace):
        if Path(args.workdir).exists() and not Path(args.workdir).is_dir():
            raise NotADirectoryError(f"--workdir {args.workdir} exists and is not a directory")
        self.config = loaded.config
        self.warnings = loaded.warnings
        self.cwd = sweep_file.resolve().parent
        self.name = self.config.name or sweep_file.stem
        self.workdir = Path(args.workdir).resolve()
        self.parallelism = args.parallelism or self.config.parallelism
        self.grace = self.config.stop_grace_period_seconds if args.stop_grace is None else args.stop_grace
        self.quiet = args.quiet
        self.sampler = make_sampler(self.config, args.seed)
        self.cap = run_cap(self.config, sweep_size(self.config) if self.config.method == "grid" else None, args.run_cap)
        self.tracker = SweepTracker(self.config)
        self.runs: dict[str, LocalRun] = {}
        self.exhausted = False
        self.phase_reason = ""
        self.interrupted = False
        self.wake = asyncio.Event()
        self.events: TextIO | None = None
        self.event_count = 0
        self.began = time.monotonic()
        self.warned_no_metric = False

    # -- output -----------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if not self.quiet:
            try:
                print(f"[{time.monotonic() - self.began:6.1f}s] {text}", flush=True)
            except BrokenPipeError:
                self.quiet = True  # e.g. `kubesweep run ... | head`: the sweep goes on, silently

    def record(self, obj: dict[str, Any]) -> None:
        assert self.events is not None
        self.events.write(json.dumps({k: _json_safe(v) for k, v in obj.items()}) + "\n")
        self.events.flush()
        self.event_count += 1

    # -- runs -------------------------------------------------------------------------------------
    def results(self) -> list[Result]:
        out = []
        for run in self.runs.values():
            s = self.tracker.runs.get(run.name)
            if s is not None:
                out.append(Result(run.params, s.latest, s.state, s.iterations))
        return out

    async def start_run(self, index: int) -> bool:
        params = self.sampler.suggest(index, self.results())
        if params is None:
            self.exhausted = True
            return False
        name = f"{self.name}-{index:04d}"
        rundir = self.workdir / name
        rundir.mkdir(parents=True, exist_ok=True)
        args_file = rundir / "args.json"
        args_file.write_text(json.dumps(params))
        # Locally ${interpreter} is the Python running kubesweep, so the run sees the same packages.
        argv = build_argv(self.config.command, params, program=self.config.program, env=dict(os.environ),
                          args_json_file=str(args_file), interpreter=sys.executable)
        run = LocalRun(name, index, params, argv, planned=planned_iterations(self.config, params)[0])
        run.log = open(rundir / "output.log", "w", encoding="utf-8")
        env = {**os.environ, "KUBESWEEP_RUN": name, "KUBESWEEP_SWEEP": self.name, "PYTHONUNBUFFERED": "1"}
        env.pop("KUBESWEEP_PUSH_URL", None)  # kubesweep.log() prints rows locally
        try:
            run.proc = await asyncio.create_subprocess_exec(
                *argv, cwd=self.cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: a stop reaches the script's children too
            )
        except OSError as exc:
            run.log.write(f"kubesweep: could not start {argv[0]}: {exc}\n")
            run.log.close()
            self.runs[name] = run
            run.started = run.ended = time.monotonic()
            run.exit_code = 127
            self.tracker.end(name, FAILED, f"could not start: {exc}")
            self.record({"run": name, "state": "failed"})
            self.say(f"{name} failed to start: {exc}")
            return True
        run.started = time.monotonic()
        self.runs[name] = run
        self.tracker.stats(name)  # Running from now, so the status line counts it
        self.say(f"{name} started: {' '.join(argv[2:]) if len(argv) > 2 else ' '.join(argv)}")
        asyncio.ensure_future(self.follow(run))
        return True

    async def follow(self, run: LocalRun) -> None:
        assert run.proc is not None and run.proc.stdout is not None and run.log is not None
        async for raw in run.proc.stdout:
            line = raw.decode("utf-8", "replace")
            run.log.write(line)
            if line.strip():
                run.last_line = line
            row = parse_line(line)
            if row is None:
                continue
            self.record({"run": run.name, **row})
            for decision in self.tracker.row(run.name, row, at=time.monotonic()):
                self.stop(decision)
        run.exit_code = await run.proc.wait()
        run.ended = time.monotonic()
        run.log.close()
        stats = self.tracker.stats(run.name)
        if stats.state == RUNNING and run.interrupted:
            pass  # stopped by Ctrl-C: neither finished nor failed, and not in the replay file
        elif stats.state == RUNNING:
            ok = run.exit_code == 0
            reason = "Completed" if ok else _exit_reason(run.exit_code)
            self.tracker.end(run.name, SUCCEEDED if ok else FAILED, reason)
            self.record({"run": run.name, "state": "finished" if ok else "failed"})
            if ok:
                self.say(f"{run.name} succeeded after {stats.iterations} iterations")
            else:
                run.failure = f"{reason}; last output: {run.last_line.strip()[:200]!r}; log: {run.log.name}"
                self.say(f"{run.name} FAILED: {run.failure}")
            if stats.iterations == 0 and self.tracker.metric and not self.warned_no_metric:
                self.warned_no_metric = True
                self.say(f"warning: {run.name} ended without one finite value of {self.tracker.metric!r}; "
                         f"its last line was {run.last_line.strip()[:200]!r}. Print e.g. "
                         f"'{self.tracker.metric}=0.42' or a JSON object line once per epoch.")
        self.wake.set()

    def stop(self, d: StopDecision) -> None:
        run = self.runs[d.run]
        self.say(f"{d.run} EARLY-STOPPED: {d.message()}")
        if run.proc is not None and run.proc.returncode is None and not run.stop_sent:
            run.stop_sent = True
            _signal_group(run.proc, signal.SIGTERM)
            asyncio.get_running_loop().call_later(self.grace, _signal_group, run.proc, signal.SIGKILL)

    def progress(self) -> Progress:
        active = sum(1 for r in self.runs.values() if r.ended is None)
        return Progress(len(self.runs), active, self.tracker.count(FAILED), self.exhausted)

    async def main(self) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.events = open(self.workdir / "events.jsonl", "w", encoding="utf-8")
        for w in self.warnings:
            self.say(f"warning: {w}")
        self.say(f"sweep {self.name}: method {self.config.method}, parallelism {self.parallelism}, "
                 f"runs {self.cap if self.cap is not None else 'until Ctrl-C'}, logs in {self.workdir}")
        last_status = 0.0
        while True:
            step = next_step(self.config, self.progress(), self.cap, self.parallelism)
            for _ in range(0 if self.interrupted else step.start):
                if not await self.start_run(len(self.runs)):
                    break
            if self.progress().active == 0:
                step = next_step(self.config, self.progress(), self.cap, self.parallelism)
                if self.interrupted or step.start == 0:
                    self.phase_reason = "stopped by Ctrl-C" if self.interrupted else step.reason
                    return "Interrupted" if self.interrupted else step.phase
                continue
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=5.0)
            except asyncio.TimeoutError:
                pass
            if time.monotonic() - last_status > 5:
                last_status = time.monotonic()
                self.say(self.status_line())

    def interrupt(self) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        self.say(f"interrupted: stopping every run (SIGTERM, then SIGKILL after {self.grace:g} s), no new runs")
        for run in self.runs.values():
            if run.proc is not None and run.proc.returncode is None:
                run.interrupted = True
                _signal_group(run.proc, signal.SIGTERM)
                asyncio.get_running_loop().call_later(self.grace, _signal_group, run.proc, signal.SIGKILL)
        self.wake.set()

    def status_line(self) -> str:
        t = self.tracker
        best = t.best_run()
        best_text = f" | best {t.metric} {best.latest:.4g} ({best.name})" if best else ""
        return (f"running {t.count(RUNNING)} | succeeded {t.count(SUCCEEDED)} | early-stopped {t.count(EARLY_STOPPED)}"
                f" | failed {t.count(FAILED)}{best_text}")

    # -- summary ----------------------------------------------------------------------------------
    def summary(self, phase: str) -> dict[str, Any]:
        usage = Usage()
        for run in self.runs.values():
            s = self.tracker.stats(run.name)
            usage += run_usage(s.iterations, run.seconds, 1.0, run.planned, s.state == EARLY_STOPPED,
                               s.seconds_per_iteration())
        best = self.tracker.best_run()
        full = sum(r.planned or 0 for r in self.runs.values())
        return {
            "sweep": self.name,
            "phase": phase,
            "reason": self.phase_reason,
            "runs": {**{state: self.tracker.count(state) for state in (SUCCEEDED, EARLY_STOPPED, FAILED)},
                     "Interrupted": sum(1 for r in self.runs.values() if r.interrupted
                                        and self.tracker.stats(r.name).state == RUNNING)},
            "failures": {r.name: r.failure for r in self.runs.values() if r.failure},
            "best": None if best is None else {
                "run": best.name, "value": best.latest, "metric": self.tracker.metric, "state": best.state,
                "iteration": best.iterations, "parameters": self.runs[best.name].params,
            },
            "lowest": _best_value_run(self.tracker),
            "iterations_trained": usage.iterations_trained,
            "iterations_saved": usage.iterations_saved,
            "iterations_without_early_termination": full,
            "run_seconds_used": round(usage.gpu_seconds_used, 3),
            "run_seconds_saved": round(usage.gpu_seconds_saved, 3),
            "stops": [
                {"run": s.name, "band": s.stop.band, "value": s.stop.value, "threshold": s.stop.threshold,
                 "reason": s.stop.message()}
                for s in self.tracker.runs.values() if s.stop is not None
            ],
            "warnings": self.warnings + self.tracker.warnings(),
            "events_file": str(self.workdir / "events.jsonl"),
        }


def _best_value_run(tracker: SweepTracker) -> dict[str, Any] | None:
    """The run with the best single value at any iteration (not W&B's ranking; shown beside it)."""
    runs = [r for r in tracker.runs.values() if r.best is not None]
    if not runs:
        return None
    pick = max if tracker.maximize else min
    r = pick(runs, key=lambda r: r.best)
    return {"run": r.name, "value": r.best, "latest": r.latest}


def _short(params: dict[str, Any]) -> str:
    """Parameters for a person: floats to 4 significant digits."""
    return json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in params.items()})


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def render_summary(s: dict[str, Any]) -> str:
    lines = [f"sweep {s['sweep']}: {s['phase']} ({s['reason']})"]
    r = s["runs"]
    lines.append(f"runs: {r['Succeeded']} succeeded, {r['EarlyStopped']} early-stopped, {r['Failed']} failed"
                 + (f", {r['Interrupted']} interrupted" if r["Interrupted"] else ""))
    if s["best"]:
        b = s["best"]
        how = {"EarlyStopped": "early-stopped at", "Failed": "FAILED at"}.get(b["state"], "last value, at")
        lines.append(f"best run (ranked by each run's last value, as W&B ranks runs): {b['run']}  {b['metric']} = "
                     f"{b['value']:.6g} ({how} iteration {b['iteration']})  parameters {_short(b['parameters'])}")
        low = s.get("lowest")
        if low and low["run"] != b["run"]:
            lines.append(f"best value any run reached: {low['run']}  {b['metric']} = {low['value']:.6g} "
                         f"(it ended at {low['latest']:.6g})")
    full = s["iterations_without_early_termination"]
    lines.append(f"iterations trained: {s['iterations_trained']}"
                 + (f" of {full} without early termination" if full else ""))
    lines.append(f"iterations saved by early termination: {s['iterations_saved']}"
                 f"  (~{s['run_seconds_saved']:.1f} s of training time, at each stopped run's own pace; "
                 f"{s['run_seconds_used']:.1f} s used by all runs, start-up included)")
    for stop in s["stops"]:
        lines.append(f"  stopped {stop['run']} at band {stop['band']}: {stop['value']:.4g} worse than {stop['threshold']:.4g}")
    for name, why in s["failures"].items():
        lines.append(f"  failed {name}: {why}")
    for w in s["warnings"]:
        lines.append(f"warning: {w}")
    lines.append(f"replay file: {s['events_file']}")
    return "\n".join(lines)


def run_sweep(loaded: Loaded, args: argparse.Namespace) -> int:
    sweep = LocalSweep(loaded, Path(args.sweep), args)

    async def go() -> str:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sweep.interrupt)
        return await sweep.main()

    phase = asyncio.run(go())
    summary = sweep.summary(phase)
    (sweep.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    try:
        print(render_summary(summary))
        print(f"re-check every decision: kubesweep replay {args.sweep} {summary['events_file']}")
    except BrokenPipeError:
        pass  # the summary is in summary.json; the exit code still tells how the sweep ended
    return {"Succeeded": 0, "Interrupted": 130}.get(phase, 1)
