"""One Sweep in the cluster: creates its runs, feeds their rows to the engine, acts on decisions.

State lives in the API server: each run's SweepRun status is its durable record (see records.py)
and the Sweep status is a summary derived from them. This object is a cache of both, rebuilt by
`start()` after an operator restart. Everything here runs on kopf's event loop; API calls go to
worker threads, so the engine is only ever touched from one thread.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..engine import config as sweep_config
from ..engine.hyperband import StopDecision
from ..engine.problems import ConfigError
from ..engine.savings import Usage, planned_iterations, run_usage
from ..engine.schedule import PHASE_FAILED, PHASE_SUCCEEDED, Progress, next_step, run_cap
from ..engine.search import Result, make_sampler, sweep_size
from ..engine.tracker import EARLY_STOPPED, ENDED, FAILED, RUNNING, SUCCEEDED, SweepTracker
from . import manifests, metrics
from .api import Kube
from .collector import LogFollower, Rows
from .records import now_rfc3339, parse_time, run_status, stats_from_status

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0
PROGRESS_SECONDS = 10.0  # iteration counts in SweepRun status refresh this often; the log is the truth
CREATE_CONCURRENCY = 16  # API calls in flight while backfilling or writing statuses
MAX_WARNINGS = 20


@dataclass
class RunRecord:
    name: str
    index: int
    params: dict[str, Any]
    obj: dict[str, Any]  # the SweepRun as created (for owner references and events)
    gpus: float
    planned: int | None
    pod: str | None = None
    started_at: float | None = None  # wall-clock seconds
    ended_at: float | None = None
    outcome: tuple[str, str] | None = None  # the pod's end, applied once its log is drained
    follower: LogFollower | None = None
    dirty: bool = True
    pace: float | None = None  # seconds per iteration stored before a restart
    stop_pending: bool = False  # decided EarlyStopped, Job not yet suspended (retried until it is)
    stop_restored: bool = False  # re-applied after a restart: not a new decision (no latency sample)
    stop_received: float = 0.0  # monotonic time the deciding row arrived (decision latency)
    stopping: bool = False
    job_created: bool = False  # a failed create is retried by reconcile, never skipped
    urgent: bool = True  # a state change: written on the next flush; mere progress waits PROGRESS_SECONDS
    written_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one status write at a time, newest last
    push_seq: int = 0  # sequence number of the last pushed row accepted (metrics.source push)

    def seconds(self, now: float) -> float:
        if self.started_at is None:
            return 0.0
        return max((self.ended_at or now) - self.started_at, 0.0)


@dataclass
class SweepController:
    kube: Kube
    body: dict[str, Any]
    push_url: str | None = None
    record_dir: str | None = None  # if set, every row and end the engine sees goes to <ns>_<sweep>.jsonl
    config: sweep_config.SweepConfig | None = None
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    runs: dict[str, RunRecord] = field(default_factory=dict)
    phase: str = "Pending"
    reason: str = ""
    exhausted: bool = False

    def __post_init__(self) -> None:
        meta = self.body["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.lock = asyncio.Lock()
        self.tracker: SweepTracker | None = None
        self.sampler: Any = None
        self.cap: int | None = None
        self.flusher: asyncio.Task[None] | None = None
        self.last_status: dict[str, Any] = {}
        self.last_written = 0.0
        self.reconcile_wanted = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.transitions: dict[str, tuple[str, str]] = {}
        self.record: Any = None
        self.next_index = 0
        self.unborn: dict[int, dict[str, Any]] = {}  # sampled runs whose SweepRun create failed: retried first
        self.slots = asyncio.Semaphore(CREATE_CONCURRENCY)

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Validate, then rebuild state from the SweepRuns and pods that already exist."""
        try:
            loaded = sweep_config.load(self.body)
        except ConfigError as exc:
            self.problems = [str(p) for p in exc.problems]
        else:
            self.config, self.warnings = loaded.config, list(loaded.warnings)
            self.problems = manifests.template_problems(loaded.config)
        # Events are posted once per spec generation, not again on every operator restart.
        stored = self.body.get("status") or {}
        seen = stored.get("observedGeneration") == self.body["metadata"].get("generation")
        self.phase = stored.get("phase") or self.phase  # so a restart does not announce a phase again
        if self.problems:
            self.phase, self.reason = "Invalid", "; ".join(self.problems)
            await self.write_sweep_status(force=True)
            if not seen:
                await self.kube.event(self.body, "Warning", "InvalidSpec", f"sweep refused: {self.reason}")
            return
        assert self.config is not None
        self.tracker = SweepTracker(self.config)
        self.sampler = make_sampler(self.config, seed=self.uid)
        self.cap = run_cap(self.config, sweep_size(self.config) if self.config.method == "grid" else None)
        for w in self.warnings if not seen else []:
            await self.kube.event(self.body, "Warning", "SurprisingSpec", w)
        if self.record_dir:
            self.record = open(os.path.join(self.record_dir, f"{self.ns}_{self.name}.jsonl"), "a", encoding="utf-8")
        await self.restore()
        self.flusher = asyncio.create_task(self.loop())

    async def stop(self) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
        if self.record is not None:
            self.record.close()
        for rec in self.runs.values():
            if rec.follower is not None:
                rec.follower.stop()

    async def restore(self) -> None:
        assert self.tracker is not None
        existing = sorted(await self.kube.list_sweepruns(self.ns, self.name), key=lambda o: o["spec"]["index"])
        for obj in existing:
            rec = self._record(obj)
            status = obj.get("status") or {}
            stats, bands, _ = stats_from_status(rec.name, status)
            rec.pod = status.get("pod")
            rec.started_at = parse_time(status.get("startTime"))
            rec.ended_at = parse_time(status.get("completionTime"))
            rec.pace = status.get("secondsPerIteration")
            rec.push_seq = int(status.get("pushSeq") or 0)
            stats.stop = self._stored_decision(rec.name, status)
            self.tracker.restore(rec.name, stats, bands)
            rec.dirty = False
        self.next_index = max((r.index for r in self.runs.values()), default=-1) + 1
        stops = self.tracker.evaluate_all()  # thresholds may have moved while nobody was watching
        for rec in self.runs.values():
            if self.tracker.stats(rec.name).state not in ENDED:
                await self._ensure_job(rec)
        for pod in await self.kube.list_run_pods(self.ns, self.name):
            rec = self.runs.get((pod["metadata"].get("labels") or {}).get(manifests.LABEL_RUN, ""))
            if rec is not None and self.tracker.stats(rec.name).state == EARLY_STOPPED and not manifests.pod_outcome(pod) \
                    and not pod["metadata"].get("deletionTimestamp"):
                # Stopped before the restart, but the suspend may not have reached the API server.
                rec.stop_pending, rec.stop_restored = True, True
            self.on_pod(pod, "ADDED")
        for d in stops:
            self._decided(d, time.monotonic())
        log.info("sweep %s/%s: restored %d runs", self.ns, self.name, len(self.runs))

    def _stored_decision(self, run: str, status: dict[str, Any]) -> StopDecision | None:
        d = status.get("decision")
        if not d or status.get("state") != EARLY_STOPPED or self.config is None or self.config.hyperband is None:
            return None
        rule, metric = self.config.hyperband, self.config.metric
        return StopDecision(run, d["band"], d.get("iteration", d["band"]), d["value"], d["threshold"], d["runsAtBand"],
                            metric.name, metric.goal, rule.strict, rule.eta)

    def _record(self, obj: dict[str, Any]) -> RunRecord:
        assert self.config is not None
        params = obj["spec"]["parameters"]
        rec = RunRecord(obj["metadata"]["name"], obj["spec"]["index"], params, obj,
                        manifests.gpus_requested(self.config.template), planned_iterations(self.config, params)[0])
        self.runs[rec.name] = rec
        return rec

    async def loop(self) -> None:
        """Backfill and write statuses: immediately when asked, else every FLUSH_SECONDS."""
        while True:
            try:
                await self.reconcile()
                await self.flush()
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                log.warning("sweep %s/%s: API error %s %s: %s; retrying", self.ns, self.name, exc.status, exc.reason,
                            _api_message(exc))
            except Exception:  # noqa: BLE001 - one sweep's bug must not stop the others
                log.exception("sweep %s/%s: reconcile failed; retrying", self.ns, self.name)
            try:
                await asyncio.wait_for(self.reconcile_wanted.wait(), FLUSH_SECONDS)
            except asyncio.TimeoutError:
                pass
            self.reconcile_wanted.clear()

    def poke(self) -> None:
        self.reconcile_wanted.set()

    def update_spec(self, body: dict[str, Any]) -> list[str]:
        """Apply a spec change: parallelism, run_cap and max_failed_runs take effect; the search
        definition of runs already started cannot change, so other edits are reported, not applied."""
        if self.config is None:
            return []
        try:
            new = sweep_config.load(body).config
        except ConfigError as exc:
            return [f"spec change refused, the sweep keeps its previous spec: {exc}"]
        live = ("parallelism", "run_cap", "max_failed_runs")
        self.config = dataclasses.replace(self.config, **{k: getattr(new, k) for k in live})
        self.cap = run_cap(self.config, sweep_size(self.config) if self.config.method == "grid" else None)
        self.body = body
        ignored = [k for k in ("method", "metric", "parameters", "early_terminate", "command", "program", "template")
                   if body["spec"].get(k) != self.config.raw.get(k)]
        self.poke()
        return [f"spec.{k} changed after the sweep started; runs already created keep the old value" for k in ignored]

    # -- creating runs ----------------------------------------------------------------------------
    def progress(self) -> Progress:
        assert self.tracker is not None
        active = sum(1 for r in self.runs.values() if self.tracker.stats(r.name).state not in ENDED)
        return Progress(len(self.runs) + len(self.unborn), active + len(self.unborn), self.tracker.count(FAILED),
                        self.exhausted)

    def results(self) -> list[Result]:
        assert self.tracker is not None
        return [Result(r.params, self.tracker.stats(r.name).latest, self.tracker.stats(r.name).state,
                       self.tracker.stats(r.name).iterations) for r in self.runs.values()]

    async def reconcile(self) -> None:
        if self.config is None or self.tracker is None:
            return
        for rec in self.runs.values():
            if rec.stop_pending and not rec.stopping:
                await self.apply_stop(rec)
        async with self.lock:
            for rec in list(self.runs.values()):
                if not rec.job_created and self.tracker.stats(rec.name).state not in ENDED:
                    await self._ensure_job(rec)
            step = next_step(self.config, self.progress(), self.cap)
            results = self.results() if self.config.method == "bayes" else []
            for _ in range(step.start):  # sample in order, then create concurrently
                params = self.sampler.suggest(self.next_index, results)
                if params is None:
                    self.exhausted = True
                    break
                self.unborn[self.next_index] = params
                self.next_index += 1
            outcomes = await asyncio.gather(*(self._create_run(i, p) for i, p in sorted(self.unborn.items())),
                                            return_exceptions=True)
            for failure in outcomes:
                if isinstance(failure, Exception):
                    raise failure  # logged by loop(); the run is created on the next pass
            step = next_step(self.config, self.progress(), self.cap)
            if step.phase != self.phase:
                if step.phase == PHASE_FAILED:
                    await self.kube.event(self.body, "Warning", step.reason.split(":", 1)[0], step.reason)
                elif step.phase == PHASE_SUCCEEDED:
                    await self.kube.event(self.body, "Normal", "SweepComplete", self.summary_line())
            self.phase, self.reason = step.phase, step.reason

    async def _create_run(self, index: int, params: dict[str, Any]) -> None:
        """SweepRun, then Job, for one sampled run; idempotent by name, so a retry is safe."""
        assert self.config is not None and self.tracker is not None
        async with self.slots:
            obj, _ = await self.kube.create_sweeprun(manifests.sweeprun(self.body, index, params, self.config))
            del self.unborn[index]
            rec = self._record(obj)
            self.tracker.stats(rec.name)
            await self._ensure_job(rec)

    async def _ensure_job(self, rec: RunRecord) -> None:
        assert self.tracker is not None and self.config is not None
        body = manifests.job(rec.obj, self.config, self.push_url)
        try:
            await self.kube.create_job(body)  # False (409) when an earlier attempt made it
            rec.job_created = True
        except ApiException as exc:
            if exc.status not in (400, 422):
                raise
            # The API server refused the pod template: this run can never start. It counts as
            # failed, so a broken template ends the sweep through the failure budget.
            self.tracker.end(rec.name, FAILED, f"InvalidPodTemplate: {_api_message(exc)}")
            rec.dirty = rec.urgent = True
            await self.kube.event(self.body, "Warning", "InvalidPodTemplate", f"{rec.name}: {_api_message(exc)}")

    # -- metrics in -------------------------------------------------------------------------------
    def on_rows(self, run: str, rows: Rows, received: float, source: str = "logs") -> list[StopDecision]:
        """History rows of `run` (from its log or the push endpoint). Decisions are acted on at once."""
        if self.tracker is None or run not in self.runs:
            return []
        metrics.ROWS.labels(self.ns, self.name, source).inc(len(rows))
        decisions: list[StopDecision] = []
        for row in rows:
            self._record_event({"run": run, **row})
            decisions += self.tracker.row(run, row, at=time.time())
        self.runs[run].dirty = True
        for d in decisions:
            self._decided(d, received)
        return decisions

    def _decided(self, d: StopDecision, received: float) -> None:
        rec = self.runs[d.run]
        rec.stop_pending, rec.stop_received, rec.dirty, rec.urgent = True, received, True, True
        self._spawn(self.apply_stop(rec))

    def _record_event(self, obj: dict[str, Any]) -> None:
        """Append to the replay record (`kubesweep replay SWEEP FILE` re-checks every decision)."""
        if self.record is not None:
            self.record.write(json.dumps(obj, default=str) + "\n")
            self.record.flush()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def apply_stop(self, rec: RunRecord) -> None:
        """Record the decision durably, announce it, then stop the pods. A failure is retried by
        `loop`; after a crash `restore` repeats the steps, and the Event's fixed name keeps it single."""
        if rec.stopping or not rec.stop_pending:
            return
        rec.stopping = True
        try:
            await self.flush_run(rec)
            stop = self.tracker.stats(rec.name).stop if self.tracker else None
            await self.kube.event(self.body, "Normal", "RunEarlyStopped", f"{rec.name}: {stop.message() if stop else 'stopped'}",
                                  name=f"{rec.name}.early-stopped.{self.uid[:8]}")
            await self.kube.suspend_job(self.ns, rec.name)
            if rec.pod and self.config is not None:
                await self.kube.delete_pod(self.ns, rec.pod, self.config.stop_grace_period_seconds)
            rec.stop_pending = False
            if not rec.stop_restored:
                metrics.DECISION_LATENCY.observe(time.monotonic() - rec.stop_received)
        except ApiException as exc:
            log.warning("run %s/%s: stopping failed (%s %s: %s); will retry", self.ns, rec.name, exc.status, exc.reason,
                        _api_message(exc))
        finally:
            rec.stopping = False
        self.poke()

    def on_pod(self, pod: dict[str, Any], event_type: str) -> None:
        assert self.tracker is not None and self.config is not None
        run = (pod["metadata"].get("labels") or {}).get(manifests.LABEL_RUN)
        rec = self.runs.get(run or "")
        if rec is None:
            return
        name = pod["metadata"]["name"]
        state = self.tracker.stats(rec.name).state
        if rec.pod is None:
            rec.pod, rec.dirty, rec.urgent = name, True, True
        elif rec.pod != name:
            if state not in ENDED:
                # The first pod vanished and the Job made another: its log would restart at epoch 1.
                self._end(rec, FAILED, f"PodLost: pod {rec.pod} disappeared; runs are not restarted")
                self._spawn(self.kube.suspend_job(self.ns, rec.name))
            return
        status = pod.get("status") or {}
        if rec.started_at is None and status.get("phase") in ("Running", "Succeeded", "Failed"):
            rec.started_at = parse_time(status.get("startTime")) or time.time()
            rec.dirty = rec.urgent = True
        outcome = manifests.pod_outcome(pod)
        if outcome is not None and rec.outcome is None:
            rec.outcome = outcome
            rec.ended_at = _finished_at(pod) or time.time()
        elif outcome is None and event_type == "DELETED" and state not in ENDED:
            rec.outcome = (FAILED, f"PodLost: pod {name} was deleted before it finished")
            rec.ended_at = time.time()
        if state in ENDED:
            return
        if self.config.metrics_source == "logs" and rec.follower is None and status.get("phase") in ("Running", "Succeeded", "Failed") \
                and event_type != "DELETED":
            self._follow(rec, name)
        elif rec.outcome is not None and rec.follower is None:
            self._end(rec, *rec.outcome)

    def _follow(self, rec: RunRecord, pod: str) -> None:
        assert self.tracker is not None and self.config is not None
        container = self.config.metrics_container
        skip = self.tracker.stats(rec.name).rows
        loop = asyncio.get_running_loop()

        def ended(problem: str | None, permanent: bool) -> None:
            rec.follower = None
            if problem:
                log.warning("run %s/%s: %s", self.ns, rec.name, problem)
            if permanent:
                # Without its log the run cannot be judged: say so rather than report it Succeeded.
                self._end(rec, FAILED, f"LogUnreadable: {problem}")
                self._spawn(self.kube.suspend_job(self.ns, rec.name))
            elif rec.outcome is not None:
                self._end(rec, *rec.outcome)
            elif problem:
                self._spawn(self._recheck_pod(rec))

        rec.follower = LogFollower(self.kube, loop, self.ns, pod, container, skip,
                                   lambda rows, t: self.on_rows(rec.name, rows, t), ended).start()

    async def _recheck_pod(self, rec: RunRecord) -> None:
        pod = await self.kube.get_pod(self.ns, rec.pod or "")
        if pod is None:
            self.on_pod({"metadata": {"name": rec.pod, "labels": {manifests.LABEL_RUN: rec.name}}, "status": {}}, "DELETED")
        else:
            self.on_pod(pod, "MODIFIED")

    def _end(self, rec: RunRecord, state: str, reason: str) -> None:
        assert self.tracker is not None
        if self.tracker.stats(rec.name).state in ENDED:
            return
        self._record_event({"run": rec.name, "state": "finished" if state == SUCCEEDED else "failed"})
        self.tracker.end(rec.name, SUCCEEDED if state == SUCCEEDED else FAILED, reason)
        rec.ended_at = rec.ended_at or time.time()
        rec.dirty = rec.urgent = True
        if state == FAILED:
            self._spawn(self.kube.event(self.body, "Warning", "RunFailed", f"{rec.name} failed: {reason}"))
        self.poke()  # backfill now

    # -- statuses out -----------------------------------------------------------------------------
    async def flush(self) -> None:
        now = time.monotonic()
        due = [r for r in self.runs.values() if r.dirty and not r.lock.locked()
               and (r.urgent or now - r.written_at >= PROGRESS_SECONDS)]

        async def write(rec: RunRecord) -> None:
            async with self.slots:
                await self.flush_run(rec)

        outcomes = await asyncio.gather(*(write(r) for r in due), return_exceptions=True)
        await self.write_sweep_status()
        for failure in outcomes:
            if isinstance(failure, Exception):
                raise failure

    async def flush_run(self, rec: RunRecord) -> None:
        """Write the run's status now. Writes of one run never overlap, so the newest state lands last."""
        assert self.tracker is not None
        async with rec.lock:
            rec.dirty = rec.urgent = False
            try:
                await self.kube.patch_sweeprun_status(self.ns, rec.name, self._run_status(rec))
            except Exception:
                rec.dirty = rec.urgent = True  # written on the next flush
                raise
            rec.written_at = time.monotonic()

    def _run_status(self, rec: RunRecord) -> dict[str, Any]:
        assert self.tracker is not None
        stats = self.tracker.stats(rec.name)
        usage = self.usage(rec)
        extra = {
            "pod": rec.pod,
            "startTime": _rfc(rec.started_at),
            "completionTime": _rfc(rec.ended_at) if stats.state in ENDED else None,
            "gpus": int(rec.gpus) if float(rec.gpus).is_integer() else rec.gpus,
            "gpuSeconds": round(usage.gpu_seconds_used, 3),
            "secondsPerIteration": _round(stats.seconds_per_iteration() or rec.pace),
            "pushSeq": rec.push_seq or None,
        }
        status = run_status(stats, self.tracker.bands_reached(), self.tracker.band_values(rec.name), stats.rows, extra)
        if stats.state == RUNNING and rec.started_at is None:
            status["state"] = "Pending"
        return status

    def usage(self, rec: RunRecord) -> Usage:
        assert self.tracker is not None
        s = self.tracker.stats(rec.name)
        return run_usage(s.iterations, rec.seconds(time.time()), rec.gpus, rec.planned, s.state == EARLY_STOPPED,
                         s.seconds_per_iteration() or rec.pace)

    def totals(self) -> tuple[Usage, dict[str, int], dict[int, int]]:
        """Usage, runs by state (Pending split from Running), early stops by band."""
        assert self.tracker is not None
        usage = Usage()
        states = {"Pending": 0, RUNNING: 0, SUCCEEDED: 0, EARLY_STOPPED: 0, FAILED: 0}
        bands: dict[int, int] = {}
        for rec in self.runs.values():
            s = self.tracker.stats(rec.name)
            usage += self.usage(rec)
            state = "Pending" if s.state == RUNNING and rec.started_at is None else s.state
            states[state] += 1
            if s.stop is not None:
                bands[s.stop.band] = bands.get(s.stop.band, 0) + 1
        return usage, states, bands

    def summary_line(self) -> str:
        usage, states, _ = self.totals()
        best = self.tracker.best_run() if self.tracker else None
        best_text = f"; best {self.tracker.metric} {best.latest:.6g} ({best.name})" if best and self.tracker else ""
        return (f"{states[SUCCEEDED]} succeeded, {states[EARLY_STOPPED]} early-stopped, {states[FAILED]} failed"
                f"{best_text}; {usage.iterations_saved} iterations and {usage.gpu_seconds_saved:.0f} GPU-seconds saved")

    def sweep_status(self) -> dict[str, Any]:
        generation = self.body["metadata"].get("generation")
        if self.phase == "Invalid":
            return {"phase": "Invalid", "observedGeneration": generation, "message": self.reason[:4096],
                    "conditions": [_condition("Valid", "False", "InvalidSpec", self.reason)]}
        assert self.tracker is not None
        usage, states, _ = self.totals()
        best = self.tracker.best_run()
        warnings = (self.warnings + self.tracker.warnings())[:MAX_WARNINGS]
        metric_seen = any(s.iterations for s in self.tracker.runs.values())
        conditions = [
            _condition("Valid", "True", "SpecValid", "the spec is valid"),
            _condition("Complete", "True" if self.phase == PHASE_SUCCEEDED else "False",
                       "AllRunsEnded" if self.phase == PHASE_SUCCEEDED else "RunsRemaining", self.reason),
            _condition("FailureBudgetExceeded", "True" if self.reason.startswith("FailureBudgetExceeded") else "False",
                       "TooManyFailedRuns" if self.reason.startswith("FailureBudgetExceeded") else "WithinBudget",
                       self.reason),
            _condition("MetricReported", "True" if metric_seen else "False",
                       "MetricSeen" if metric_seen else "MetricNotSeen",
                       next((w for w in self.tracker.warnings()), f"{self.tracker.metric} reported") if self.tracker.metric else "no metric"),
        ]
        return {
            "phase": self.phase,
            "observedGeneration": generation,
            "message": self.reason[:4096],
            "conditions": conditions,
            "runs": {"total": len(self.runs), "pending": states["Pending"], "running": states[RUNNING],
                     "succeeded": states[SUCCEEDED], "earlyStopped": states[EARLY_STOPPED], "failed": states[FAILED]},
            "best": None if best is None else {"run": best.name, "value": best.latest, "iteration": best.iterations},
            "bands": self.tracker.bands_for_display()[:64],
            "warnings": [w[:1024] for w in warnings],
            "iterationsTrained": usage.iterations_trained,
            "iterationsSaved": usage.iterations_saved,
            "gpuSecondsUsed": round(usage.gpu_seconds_used, 1),
            "gpuSecondsSaved": round(usage.gpu_seconds_saved, 1),
            "nextIndex": max((r.index for r in self.runs.values()), default=-1) + 1,
        }

    async def write_sweep_status(self, force: bool = False) -> None:
        """Write the summary when it changed; GPU-seconds used grows by itself, so also every 10 s."""
        status = self.sweep_status()
        comparable = {k: v for k, v in status.items() if k != "gpuSecondsUsed"}
        if not force and comparable == self.last_status and time.monotonic() - self.last_written < 10:
            return
        status = {k: v for k, v in status.items() if v is not None}
        for cond in status.get("conditions", []):
            # lastTransitionTime moves only when the condition's status flips
            since = self.transitions.get(cond["type"])
            if since is None or since[0] != cond["status"]:
                since = self.transitions[cond["type"]] = (cond["status"], now_rfc3339())
            cond["lastTransitionTime"] = since[1]
        await self.kube.patch_sweep_status(self.ns, self.name, status)
        self.last_status, self.last_written = comparable, time.monotonic()


def _condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message[:1024]}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _rfc(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finished_at(pod: dict[str, Any]) -> float | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term and term.get("finishedAt"):
            return parse_time(term["finishedAt"])
    return None


def _api_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body).get("message", str(exc.reason))
    except (TypeError, ValueError):
        return str(exc.reason)
