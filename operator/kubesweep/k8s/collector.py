"""Per-epoch metrics from a run's container log, read through the API server (`pods/log`).

One thread per running pod follows the log (the client is blocking) and hands parsed rows to
the event loop. On a broken stream it reconnects and skips the rows it already delivered; a new
follower (after an operator restart) skips the rows already stored in the SweepRun.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any, Callable

from kubernetes.client.exceptions import ApiException

from ..engine.rows import parse_line
from .api import Kube

log = logging.getLogger(__name__)
Rows = list[dict[str, Any]]


class LogFollower:
    def __init__(self, kube: Kube, loop: asyncio.AbstractEventLoop, ns: str, pod: str, container: str | None,
                 skip_rows: int, on_rows: Callable[[Rows, float], None], on_end: Callable[[str | None, bool], None]):
        self.kube, self.loop, self.ns, self.pod, self.container = kube, loop, ns, pod, container
        self.delivered = skip_rows  # rows of this log already consumed
        self.on_rows, self.on_end = on_rows, on_end
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"log-{pod}", daemon=True)

    def start(self) -> "LogFollower":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        problem: str | None = None
        permanent = False  # retrying cannot help (e.g. RBAC refuses pods/log)
        attempt = 0
        while not self.stopped.is_set():
            try:
                self._read_once()
                problem = None
                break  # the stream ended: the container has terminated
            except ApiException as exc:
                if exc.status == 404:
                    problem = "pod or container gone before its log was read to the end"
                    break
                if exc.status in (401, 403):
                    problem, permanent = f"log unreadable: {exc.status} {_message(exc)}", True
                    break
                if exc.status == 400 and attempt < 600:  # container still creating: not ready to serve logs
                    attempt += 1
                    time.sleep(0.5)
                    continue
                problem = f"log read failed: {exc.status} {_message(exc)}"
            except Exception as exc:  # noqa: BLE001 - a network error must not kill the follower
                problem = f"log read failed: {exc}"
            attempt += 1
            if attempt > 20:
                break
            log.warning("%s/%s: %s; reconnecting", self.ns, self.pod, problem)
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
        if not self.stopped.is_set():
            self.loop.call_soon_threadsafe(self.on_end, problem, permanent)

    def _read_once(self) -> None:
        seen = 0
        pending = b""
        for chunk in self.kube.follow_log(self.ns, self.pod, self.container):
            if self.stopped.is_set():
                return
            received = time.monotonic()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            rows = []
            for raw in lines:
                row = parse_line(raw.decode("utf-8", "replace"))
                if row is None:
                    continue
                seen += 1
                if seen > self.delivered:
                    rows.append(row)
            if rows:
                self.delivered += len(rows)
                self.loop.call_soon_threadsafe(self.on_rows, rows, received)
        if pending.strip():
            row = parse_line(pending.decode("utf-8", "replace"))
            if row is not None and seen + 1 > self.delivered:
                self.delivered += 1
                self.loop.call_soon_threadsafe(self.on_rows, [row], time.monotonic())


def _message(exc: ApiException) -> str:
    """The API server's own words, e.g. 'pods "x" is forbidden: ... cannot get resource "pods/log"'."""
    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)
