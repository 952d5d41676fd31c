"""The push endpoint: `POST /v1/report` for scripts that send rows with `kubesweep.log(...)`.

A run proves who it is with its projected ServiceAccount token (audience `kubesweep`). The API
server's TokenReview says which pod the token is bound to, and the pod's labels say which run
that is: the request body never names the run, so one run's token cannot report for another.
Rows are written to the run's durable record before the request is answered.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from aiohttp import web

from . import manifests, metrics
from .api import Kube

log = logging.getLogger(__name__)
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
MAX_ROWS = 1000


def _reject(status: int, reason: str, message: str) -> web.Response:
    metrics.PUSH_REJECTED.labels(reason).inc()
    return web.json_response({"error": message}, status=status)


def make_app(kube: Kube, find_controller: Callable[[str, str], Any]) -> web.Application:
    async def report(request: web.Request) -> web.Response:
        received = time.monotonic()
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return _reject(401, "no_token", "send Authorization: Bearer <the run's projected ServiceAccount token>")
        review = await kube.token_review(auth[len("Bearer "):].strip(), manifests.TOKEN_AUDIENCE)
        status = (review or {}).get("status") or {}
        if not status.get("authenticated"):
            return _reject(401, "bad_token", f"token not accepted: {status.get('error') or 'not authenticated'}")
        user = status.get("user") or {}
        extra = user.get("extra") or {}
        username = user.get("username", "")
        if not username.startswith("system:serviceaccount:") or not extra.get(POD_NAME):
            return _reject(403, "not_a_pod", "the token must be a pod-bound ServiceAccount token of a kubesweep run")
        ns = username.split(":")[2]
        pod = await kube.get_pod(ns, extra[POD_NAME][0])
        if pod is None or pod["metadata"]["uid"] != (extra.get(POD_UID) or [None])[0]:
            return _reject(403, "unknown_pod", "the token's pod no longer exists")
        labels = pod["metadata"].get("labels") or {}
        run, sweep = labels.get(manifests.LABEL_RUN), labels.get(manifests.LABEL_SWEEP)
        controller = find_controller(ns, sweep) if run and sweep else None
        if controller is None or run not in controller.runs:
            return _reject(403, "not_a_run", "the token's pod is not a run of a sweep this operator manages")
        try:
            body = await request.json()
        except (ValueError, json.JSONDecodeError):
            return _reject(400, "bad_body", 'body must be JSON: {"rows": [{"val_loss": 0.5}, ...]}')
        rows = body.get("rows") if isinstance(body, dict) else None
        if rows is None and isinstance(body, dict) and isinstance(body.get("row"), dict):
            rows = [body["row"]]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows) or len(rows) > MAX_ROWS:
            return _reject(400, "bad_body", f'body must be {{"rows": [...]}} with at most {MAX_ROWS} objects')
        seq = body.get("seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
            return _reject(400, "bad_body", '"seq" must be the 1-based sequence number of the first row')
        state = controller.tracker.stats(run).state
        if state not in ("Running", "Pending"):
            return web.json_response({"accepted": 0, "run": run, "state": state}, status=409)
        rec = controller.runs[run]
        duplicates = 0
        if seq is not None:
            # Rows numbered up to the last one accepted already arrived (a retried request): skip them.
            duplicates = min(max(rec.push_seq - seq + 1, 0), len(rows))
            rows = rows[duplicates:]
            rec.push_seq = max(rec.push_seq, seq + duplicates + len(rows) - 1)
        decisions = controller.on_rows(run, rows, received, source="push") if rows else []
        await controller.flush_run(rec)  # durable before we say yes
        return web.json_response({"accepted": len(rows), "duplicates": duplicates, "run": run,
                                  "stopped": any(d.run == run for d in decisions)})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/v1/report", report)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(app: web.Application, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("push endpoint on %s:%d", host, port)
    return runner
