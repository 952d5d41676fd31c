"""kopf handlers: translate API events into calls on the per-Sweep controllers. Nothing else.

Sweeps are handled on create/resume (build or rebuild the controller) and on spec updates;
pods of runs are watched so a run starts being followed when its pod runs and ends when its pod
does. Deleting a Sweep needs no finalizer: owner references cascade to SweepRuns, Jobs and pods.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from prometheus_client import start_http_server

from . import manifests, metrics, push
from .api import Kube
from .controller import SweepController

log = logging.getLogger(__name__)
G, V = manifests.GROUP, manifests.VERSION


class Operator:
    """Process-wide state: the API adapter and one controller per Sweep."""

    def __init__(self, kube: Kube, push_url: str | None, metrics_port: int, push_port: int, record_dir: str | None = None):
        self.kube, self.push_url, self.record_dir = kube, push_url, record_dir
        self.metrics_port, self.push_port = metrics_port, push_port
        self.controllers: dict[tuple[str, str], SweepController] = {}
        self.push_runner: Any = None

    def find(self, ns: str, name: str) -> SweepController | None:
        return self.controllers.get((ns, name))


OPERATOR: Operator | None = None


def setup(kube: Kube, push_url: str | None, metrics_port: int, push_port: int, record_dir: str | None = None) -> Operator:
    global OPERATOR
    OPERATOR = Operator(kube, push_url, metrics_port, push_port, record_dir)
    metrics.register(lambda: list(OPERATOR.controllers.values()) if OPERATOR else [])
    return OPERATOR


def _op() -> Operator:
    assert OPERATOR is not None, "handlers.setup() was not called"
    return OPERATOR


def _plain(body: Any) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    op = _op()
    # kopf's own bookkeeping annotations live under our prefix.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubesweep.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kubesweep.io")
    settings.posting.level = logging.WARNING  # our own Events say what happened; kopf posts only problems
    settings.watching.server_timeout = 300  # re-list regularly: a silently dead watch costs at most this long
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.batching.batch_window = 0.05
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one INFO line per pod event is noise
    # Blocking client calls run in threads; the default pool (cores + 4) is too small for 200 runs.
    asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=32))
    if op.metrics_port:
        start_http_server(op.metrics_port)
    if op.push_port:
        op.push_runner = await push.serve(push.make_app(op.kube, op.find), op.push_port)


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    op = _op()
    for c in op.controllers.values():
        await c.stop()
    if op.push_runner is not None:
        await op.push_runner.cleanup()


@kopf.on.resume(G, V, "sweeps")
@kopf.on.create(G, V, "sweeps")
async def sweep_started(body: kopf.Body, **_: Any) -> None:
    op = _op()
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    old = op.controllers.pop(key, None)
    if old is not None:
        await old.stop()
    controller = SweepController(op.kube, _plain(body), push_url=op.push_url, record_dir=op.record_dir)
    try:
        await controller.start()
    except ApiException as exc:
        await controller.stop()
        raise kopf.TemporaryError(f"API error while starting the sweep: {exc.status} {exc.reason}", delay=5) from exc
    op.controllers[key] = controller


@kopf.on.update(G, V, "sweeps", field="spec")
async def sweep_changed(body: kopf.Body, **_: Any) -> None:
    controller = _op().find(body["metadata"]["namespace"], body["metadata"]["name"])
    if controller is None:
        return
    if controller.config is None:  # it was invalid: maybe it is fixed now
        await sweep_started(body=body)
        return
    for note in controller.update_spec(_plain(body)):
        await controller.kube.event(controller.body, "Warning", "SpecChangeIgnored", note)


@kopf.on.event(G, V, "sweeps")
async def sweep_event(type: str, body: kopf.Body, **_: Any) -> None:
    if type == "DELETED":
        controller = _op().controllers.pop((body["metadata"]["namespace"], body["metadata"]["name"]), None)
        if controller is not None:
            await controller.stop()


@kopf.on.event("", "v1", "pods", labels={manifests.LABEL_RUN: kopf.PRESENT})
async def pod_event(type: str, body: kopf.Body, **_: Any) -> None:
    labels = body["metadata"].get("labels") or {}
    controller = _op().find(body["metadata"]["namespace"], labels.get(manifests.LABEL_SWEEP, ""))
    if controller is not None and controller.tracker is not None:
        controller.on_pod(body, type or "ADDED")  # read-only use: no copy (this is the hottest handler)
