"""A simulated kubelet for the dev control plane: GPU nodes that "train".

:class:`SimKubelet` registers Node objects with the real apiserver, keeps them
alive (Lease renewals and Ready heartbeats), watches the pods the real
scheduler binds to them, plays each pod as a training run that prints one
metric line per simulated epoch, and serves the kubelet HTTPS API that the
apiserver calls for ``pods/log`` (``kubectl logs [-f]``).  There is no
container runtime: nothing is executed, the container's command and args are
only read for the run's hyperparameters.

Everything runs on one asyncio loop (aiohttp for both the API client and the
kubelet server); :meth:`SimKubelet.start` runs that loop in a background
thread, so sync code (pytest) can use it as a context manager::

    with SimKubelet.for_control_plane(cp, gpu_nodes(2, gpus=8), epoch_seconds=0.2):
        ...

and async code can use ``async with`` (or :meth:`astart`/:meth:`astop`) on its
own loop.

Nodes
-----
One Node per :class:`NodeSpec` (``gpu-0`` ... by :func:`gpu_nodes`): capacity
and allocatable ``nvidia.com/gpu`` (default 8), cpu, memory, pods, labels
``nvidia.com/gpu.present=true``, ``nvidia.com/gpu.product=SIM-GPU``,
``nvidia.com/gpu.count``, ``kubernetes.io/hostname``, taint
``nvidia.com/gpu=present:NoSchedule`` (``NodeSpec.taints``), address
InternalIP 127.0.0.1 and ``daemonEndpoints.kubeletEndpoint.Port`` = the port
of the kubelet server (one server for all nodes).  The Lease in
``kube-node-lease`` is renewed every 10 s and the Ready condition's heartbeat
every 60 s, so the node lifecycle controller never marks the nodes NotReady.
:meth:`start` returns once the nodes are schedulable; :meth:`stop` deletes
the nodes and their leases (and, by default, the pods left on them).

The run a pod plays
-------------------
Only the first container plays the run; the others run until it ends.
Everything is read from the first container's ``command`` + ``args``
(W&B-style flags: ``--key=value`` or ``key=value``; a token with spaces, as
in ``sh -c "python train.py --lr=0.01"``, is split shell-like) and its
literal ``env`` values:

``SIM_METRIC``         metric name, default ``val_loss``
``SIM_GOAL``           ``minimize`` (default) or ``maximize``
``epochs``             ``--epochs=N`` / ``epochs=N`` argument, else env
                       ``SIM_EPOCHS``, else 20
``SIM_EPOCH_SECONDS``  seconds per epoch (default: the kubelet's
                       ``epoch_seconds``)
``SIM_FAIL``           ``oom@K``, ``exit:C@K``, ``evict@K`` or ``hang@K``
``SIM_STOP_SECONDS``   seconds from SIGTERM to exit, default 0.2
``SIM_IGNORE_SIGTERM`` ``1``: exit only when killed at the end of the grace
                       period
``SIM_START_SECONDS``  seconds the containers stay ``ContainerCreating``
                       before they start, default 0

Epoch ``e`` (1-based) is written at ``start + e * epoch_seconds`` as::

    epoch=<e> <metric>=<value>          (value with 6 decimals)

and after the last epoch a line ``done``; then every container terminates
with exit code 0 (reason Completed) and the pod phase is Succeeded.

The learning curve is deterministic (:func:`learning_curve`)::

    params   = all flags above except "epochs" (values as written)
    h        = first 48 bits of sha256("k1=v1&k2=v2..." sorted by key) / 2**48
    d        = |log10(lr) + 2|            (lr from "lr" or "learning_rate";
                                           1 when missing or not > 0)
    minimize:  q = quality                if a "quality" param is given,
                   else min(1.9, 0.1 + 0.15 * d**2 + 0.05 * h)
               loss(e) = q + (2 - q) * exp(-e / 3)      # falls from ~2 to q
    maximize:  q = quality                if given,
                   else max(0.01, 0.9 - 0.15 * d**2 - 0.05 * h)
               value(e) = q * (1 - exp(-e / 3))         # rises from 0 to q

so the best learning rate is 1e-2, runs keep their ranking at every epoch
(what Hyperband relies on), and equal flags give equal curves.

Failures (``SIM_FAIL``), taking effect at the time epoch ``K`` would be
written (lines ``1..K-1`` are written; ``K=0`` fails at start, ``K>epochs``
never):

``oom@K``     first container terminated, reason ``OOMKilled``, exit 137;
              pod phase Failed
``exit:C@K``  reason ``Error``, exit code ``C`` (``C=0``: Completed,
              Succeeded); pod phase Failed
``evict@K``   every container terminated (exit 137, reason Error), pod phase
              Failed, ``status.reason=Evicted``, ``status.message`` as a
              kubelet writes it, condition ``DisruptionTarget``
              (reason ``TerminationByKubelet``); the pod object stays
``hang@K``    stops writing lines, keeps running until deleted

Deletion, as a real kubelet does it: once the pod has a
``deletionTimestamp`` the run writes no more metric lines, the first
container logs ``stopping: received SIGTERM``, and after
``SIM_STOP_SECONDS`` every container is terminated with exit code 143
(reason Error), or, if the grace period
(``metadata.deletionGracePeriodSeconds``) ends first or with
``SIM_IGNORE_SIGTERM=1``, at the end of the grace period with exit code 137
(SIGKILL).  The pod becomes Failed and the kubelet deletes the object with
``gracePeriodSeconds=0`` and a uid precondition.  A pod that is already
terminal is just deleted.  A force-deleted pod stops at once.

Other containers of a pod run (log nothing) until the first container ends,
then exit 0, or get the same SIGTERM/SIGKILL treatment on deletion.
Containers never restart (``restartPolicy`` is not simulated).  Pods found
Running on the nodes at start-up (from an earlier simulator) are marked
Failed with their containers ``ContainerStatusUnknown``, as after a node
reboot.

Logs API
--------
``GET /containerLogs/{namespace}/{pod}/{container}`` with ``follow``,
``tailLines`` (and the legacy ``tail``), ``timestamps`` (RFC3339 with 9
fractional digits, UTC, then a space, like the kubelet), ``limitBytes``,
``sinceSeconds``, ``sinceTime``, ``previous`` and ``stream`` (all lines are
stdout), with the kubelet's status codes and messages: 404 for an unknown pod
or container, 400 while a container is still waiting to start.  ``follow``
streams each line as it is written and ends when the container terminates.
Logs stay available until the pod object is deleted.  The server uses the
given serving cert and, with ``client_ca``, requires a client certificate
signed by it (the apiserver's kubelet client cert).  ``/healthz`` says ok.

Pod IPs are taken from the loopback range (127.1.<node>.<n>) so that nothing
ever sends traffic to another network.

Cost
----
One watch (all bound pods, ``fieldSelector=spec.nodeName!=``), one timer per
running pod, status patches only at start and end (a small work queue, one
patch in flight per pod, a few workers), nothing per epoch but an in-memory
append and a write to each open follow stream.  Measured on 2 cores: 200
pods at 1 epoch/s, each followed through the apiserver, take ~4-6 % of one
core; the median line is written ~1 ms after its scheduled time.
:meth:`SimKubelet.stats` reports these lags and the kubelet-side start and
stop latencies; ``sim_main --stats-interval`` prints them.

Needs aiohttp (and PyYAML only for a kubeconfig that is not JSON).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import platform
import re
import shlex
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Mapping, Sequence

import aiohttp
from aiohttp import web

__all__ = [
    "GPU_RESOURCE",
    "GPU_TAINT",
    "NodeSpec",
    "SimKubelet",
    "SimKubeletError",
    "gpu_nodes",
    "learning_curve",
    "metric_value",
    "parse_params",
    "run_quality",
]

log = logging.getLogger("kubesweep.simkubelet")

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT: dict[str, str] = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
SIM_ANNOTATION = "kubesweep.dev/simulated"

DEFAULT_METRIC = "val_loss"
DEFAULT_EPOCHS = 20
DEFAULT_STOP_SECONDS = 0.2


class SimKubeletError(RuntimeError):
    """The simulated kubelet could not start or reach the apiserver."""


# --------------------------------------------------------------------------
# The learning curve (pure functions, also used by tests and benchmarks)
# --------------------------------------------------------------------------

_FLAG = re.compile(r"^-{0,2}([A-Za-z_][A-Za-z0-9_.\-/]*)=(.*)$", re.S)


def parse_params(argv: Iterable[str]) -> dict[str, str]:
    """W&B-style ``--key=value`` / ``key=value`` tokens of command+args -> {key: value}.

    A token containing whitespace (``sh -c "python train.py --lr=0.1"``) is
    split shell-like first. Later occurrences win.
    """
    params: dict[str, str] = {}
    for token in argv:
        token = str(token)
        parts = [token]
        if any(ch.isspace() for ch in token):
            try:
                parts = shlex.split(token)
            except ValueError:
                parts = token.split()
        for part in parts:
            m = _FLAG.match(part)
            if m:
                params[m.group(1)] = m.group(2)
    return params


def _to_float(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _hash_fraction(params: Mapping[str, str]) -> float:
    items = sorted((k, v) for k, v in params.items() if k not in ("epochs", "quality"))
    digest = hashlib.sha256("&".join(f"{k}={v}" for k, v in items).encode()).hexdigest()
    return int(digest[:12], 16) / float(1 << 48)


def run_quality(params: Mapping[str, str], goal: str = "minimize") -> float:
    """The value the run converges to (see the module docstring)."""
    q = _to_float(params.get("quality"))
    if q is not None:
        return q
    lr = _to_float(params.get("lr", params.get("learning_rate")))
    d = abs(math.log10(lr) + 2.0) if lr is not None and lr > 0 else 1.0
    h = _hash_fraction(params)
    if goal == "maximize":
        return max(0.01, 0.9 - 0.15 * d * d - 0.05 * h)
    return min(1.9, 0.1 + 0.15 * d * d + 0.05 * h)


def metric_value(quality: float, epoch: int, goal: str = "minimize") -> float:
    """The metric after ``epoch`` (1-based) epochs of a run of that quality."""
    decay = math.exp(-epoch / 3.0)
    if goal == "maximize":
        return quality * (1.0 - decay)
    return quality + (2.0 - quality) * decay


def learning_curve(
    params: Mapping[str, str] | Sequence[str], epochs: int | None = None, goal: str = "minimize"
) -> list[float]:
    """The metric values a run with these flags prints, epoch 1..epochs.

    ``params`` is a dict or the raw argv (parsed with :func:`parse_params`).
    ``epochs`` defaults to the ``epochs`` flag, else 20. Values are rounded
    to the 6 decimals that are printed.
    """
    p = dict(params) if isinstance(params, Mapping) else parse_params(params)
    if epochs is None:
        epochs = int(_to_float(p.get("epochs")) or DEFAULT_EPOCHS)
    q = run_quality(p, goal)
    return [round(metric_value(q, e, goal), 6) for e in range(1, epochs + 1)]


# --------------------------------------------------------------------------
# Node specs
# --------------------------------------------------------------------------


@dataclasses.dataclass
class NodeSpec:
    """One simulated GPU node."""

    name: str
    gpus: int = 8
    cpu: str = "64"
    memory: str = "512Gi"
    pods: int = 110
    ephemeral_storage: str = "1Ti"
    gpu_product: str = "SIM-GPU"
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    taints: list[dict[str, str]] = dataclasses.field(default_factory=lambda: [dict(GPU_TAINT)])
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)

    def all_labels(self) -> dict[str, str]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": self.gpu_product,
            "nvidia.com/gpu.count": str(self.gpus),
        }
        labels.update(self.labels)
        return labels

    def resources(self) -> dict[str, str]:
        return {
            "cpu": str(self.cpu),
            "memory": str(self.memory),
            "pods": str(self.pods),
            "ephemeral-storage": str(self.ephemeral_storage),
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            GPU_RESOURCE: str(self.gpus),
        }


def gpu_nodes(count: int = 2, gpus: int = 8, *, prefix: str = "gpu-", **kwargs: Any) -> list[NodeSpec]:
    """``count`` NodeSpecs ``<prefix>0 .. <prefix>{count-1}`` with ``gpus`` GPUs each.

    Extra keyword arguments go to every :class:`NodeSpec` (``labels`` and
    ``taints`` are copied per node).
    """
    specs = []
    for i in range(count):
        kw = dict(kwargs)
        for k in ("labels", "annotations"):
            if k in kw:
                kw[k] = dict(kw[k])
        if "taints" in kw:
            kw["taints"] = [dict(t) for t in kw["taints"]]
        specs.append(NodeSpec(f"{prefix}{i}", gpus=gpus, **kw))
    return specs


# --------------------------------------------------------------------------
# Time formats
# --------------------------------------------------------------------------


def _iso(ts: float | None = None) -> str:
    """metav1.Time: RFC3339, seconds precision, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def _micro(ts: float | None = None) -> str:
    """metav1.MicroTime (Lease renewTime)."""
    ts = time.time() if ts is None else ts
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def _log_timestamp(ns: int) -> bytes:
    """The kubelet's RFC3339NanoFixed: 2006-01-02T15:04:05.000000000Z."""
    sec, frac = divmod(ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z").encode()


_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$"
)


def _parse_rfc3339_ns(text: str) -> int:
    m = _RFC3339.match(text.strip())
    if not m:
        raise ValueError(text)
    y, mo, d, h, mi, s, frac, tz = m.groups()
    base = _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=_dt.timezone.utc)
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        base -= sign * _dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    ns = int((base - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)).total_seconds()) * 1_000_000_000
    if frac:
        ns += int(frac.ljust(9, "0"))
    return ns


# --------------------------------------------------------------------------
# Kubeconfig and a minimal async REST client
# --------------------------------------------------------------------------


@dataclasses.dataclass
class _Access:
    server: str
    ssl: ssl.SSLContext | bool
    headers: dict[str, str]


def _load_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> _Access:
    path = Path(path)
    text = path.read_text()
    try:
        cfg = json.loads(text)
    except ValueError:
        import yaml  # PyYAML: only needed for a YAML kubeconfig

        cfg = yaml.safe_load(text)

    def pick(kind: str, name: str) -> dict:
        for item in cfg.get(kind) or []:
            if item.get("name") == name:
                return item.get(kind[:-1]) or {}
        raise SimKubeletError(f"kubeconfig {path}: no {kind[:-1]} named {name!r}")

    ctx = pick("contexts", context or cfg.get("current-context") or "")
    cluster = pick("clusters", ctx.get("cluster", ""))
    user = pick("users", ctx["user"]) if ctx.get("user") else {}
    base = path.parent

    def rel(p: str) -> str:
        return str(p if os.path.isabs(p) else base / p)

    server = cluster["server"].rstrip("/")
    sslctx: ssl.SSLContext | bool = False
    if server.startswith("https://"):
        sslctx = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            sslctx.check_hostname = False
            sslctx.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            sslctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif cluster.get("certificate-authority"):
            sslctx.load_verify_locations(cafile=rel(cluster["certificate-authority"]))
        cert = user.get("client-certificate-data")
        key = user.get("client-key-data")
        if cert or user.get("client-certificate"):
            with tempfile.TemporaryDirectory(prefix="simkubelet-") as tmp:
                if cert:
                    cert_path = os.path.join(tmp, "c.crt")
                    with open(cert_path, "wb") as f:
                        f.write(base64.b64decode(cert))
                else:
                    cert_path = rel(user["client-certificate"])
                if key:
                    key_path = os.path.join(tmp, "c.key")
                    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(base64.b64decode(key))
                else:
                    key_path = rel(user["client-key"])
                sslctx.load_cert_chain(cert_path, key_path)
    headers = {"Accept": "application/json", "User-Agent": "kubesweep-simkubelet"}
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(rel(user["tokenFile"])).read_text().strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return _Access(server, sslctx, headers)


class _ApiError(Exception):
    def __init__(self, status: int, body: str, what: str = "") -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class _Api:
    def __init__(self, access: _Access, pool: int) -> None:
        self.server = access.server
        self._timeout = aiohttp.ClientTimeout(total=30)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=access.ssl, limit=pool, limit_per_host=pool),
            headers=access.headers,
            timeout=self._timeout,
        )

    async def close(self) -> None:
        await self.session.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        want_body: bool = True,
    ) -> Any:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type} if data is not None else None
        async with self.session.request(
            method, self.server + path, data=data, params=params, headers=headers
        ) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise _ApiError(resp.status, raw.decode(errors="replace"), f"{method} {path}")
            if want_body:
                return json.loads(raw) if raw else None
            return None

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
        async with self.session.get(self.server + path, params={**params, "watch": "true"}, timeout=timeout) as resp:
            if resp.status != 200:
                raise _ApiError(resp.status, (await resp.read()).decode(errors="replace"), f"watch {path}")
            buf = bytearray()
            async for chunk in resp.content.iter_any():
                buf += chunk
                start = 0
                while True:
                    nl = buf.find(b"\n", start)
                    if nl < 0:
                        break
                    line = bytes(buf[start:nl])
                    start = nl + 1
                    if line.strip():
                        yield json.loads(line)
                del buf[:start]


# --------------------------------------------------------------------------
# Simulation state
# --------------------------------------------------------------------------


class _Log:
    """One container's log: (ns timestamp, RFC3339NanoFixed bytes, text bytes) lines."""

    __slots__ = ("lines", "closed", "_waiters")

    def __init__(self) -> None:
        self.lines: list[tuple[int, bytes, bytes]] = []
        self.closed = False
        self._waiters: list[asyncio.Future] = []

    def append(self, text: str) -> None:
        if self.closed:
            return
        ns = time.time_ns()
        self.lines.append((ns, _log_timestamp(ns), text.encode()))
        self._wake()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    async def changed(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut

    def text(self) -> str:
        return "".join(t.decode() + "\n" for _, _, t in self.lines)


class _Container:
    __slots__ = (
        "name", "image", "log", "state", "reason", "message", "exit_code",
        "started_at", "finished_at", "container_id",
    )

    def __init__(self, name: str, image: str, pod_uid: str) -> None:
        self.name = name
        self.image = image or "sim"
        self.log = _Log()
        self.state = "waiting"
        self.reason = "ContainerCreating"
        self.message = ""
        self.exit_code = 0
        self.started_at = ""
        self.finished_at = ""
        self.container_id = "containerd://" + hashlib.sha256(f"{pod_uid}/{name}".encode()).hexdigest()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> None:
        self.state, self.reason, self.started_at = "running", "", _iso()

    def terminate(self, exit_code: int, reason: str, message: str = "") -> None:
        if self.state == "terminated":
            return
        self.state, self.exit_code, self.reason, self.message = "terminated", exit_code, reason, message
        self.finished_at = _iso()
        self.log.close()

    def status(self) -> dict:
        image_digest = hashlib.sha256(self.image.encode()).hexdigest()
        st: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": f"{self.image.split('@')[0]}@sha256:{image_digest}",
            "ready": self.state == "running",
            "started": self.state == "running",
            "restartCount": 0,
            "lastState": {},
        }
        if self.state == "waiting":
            st["state"] = {"waiting": {"reason": self.reason or "ContainerCreating"}}
        elif self.state == "running":
            st["containerID"] = self.container_id
            st["state"] = {"running": {"startedAt": self.started_at}}
        else:
            term: dict[str, Any] = {
                "exitCode": self.exit_code,
                "reason": self.reason,
                "finishedAt": self.finished_at,
                "containerID": self.container_id,
            }
            if self.started_at:
                term["startedAt"] = self.started_at
                st["containerID"] = self.container_id
            else:
                del term["containerID"]
            if self.message:
                term["message"] = self.message
            st["state"] = {"terminated": term}
        return st


@dataclasses.dataclass
class _Failure:
    kind: str  # oom | exit | evict | hang
    epoch: int
    code: int = 0


_FAIL = re.compile(r"^(oom|evict|hang|exit:(-?\d+))@(\d+)$")


def _parse_failure(text: str) -> _Failure | None:
    text = text.strip()
    if not text:
        return None
    m = _FAIL.match(text)
    if not m:
        raise ValueError(f"SIM_FAIL={text!r}: expected oom@K, exit:C@K, evict@K or hang@K")
    kind = m.group(1).split(":")[0]
    return _Failure(kind, int(m.group(3)), int(m.group(2) or 0))


@dataclasses.dataclass
class _RunConfig:
    params: dict[str, str]
    metric: str
    goal: str
    epochs: int
    epoch_seconds: float
    stop_seconds: float
    ignore_sigterm: bool
    start_seconds: float
    failure: _Failure | None
    quality: float

    @classmethod
    def from_container(cls, container: Mapping[str, Any], default_epoch_seconds: float) -> "_RunConfig":
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        params = parse_params(argv)
        env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if e.get("name")}

        def num(name: str, default: float) -> float:
            v = _to_float(env.get(name))
            return default if v is None or v < 0 else v

        goal = "maximize" if env.get("SIM_GOAL", "").strip().lower() == "maximize" else "minimize"
        epochs_f = _to_float(params.get("epochs"))
        if epochs_f is None:
            epochs_f = _to_float(env.get("SIM_EPOCHS"))
        epochs = int(epochs_f) if epochs_f is not None and epochs_f >= 0 else DEFAULT_EPOCHS
        try:
            failure = _parse_failure(env.get("SIM_FAIL", ""))
        except ValueError as e:
            log.warning("%s; ignored", e)
            failure = None
        return cls(
            params=params,
            metric=env.get("SIM_METRIC", "").strip() or DEFAULT_METRIC,
            goal=goal,
            epochs=epochs,
            epoch_seconds=num("SIM_EPOCH_SECONDS", default_epoch_seconds),
            stop_seconds=num("SIM_STOP_SECONDS", DEFAULT_STOP_SECONDS),
            ignore_sigterm=env.get("SIM_IGNORE_SIGTERM", "").strip().lower() in ("1", "true", "yes"),
            start_seconds=num("SIM_START_SECONDS", 0.0),
            failure=failure,
            quality=run_quality(params, goal),
        )


class _Node:
    def __init__(self, spec: NodeSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.name = spec.name
        self._next_ip = 0

    def pod_ip(self) -> str:
        n = self._next_ip % 253 + 2
        self._next_ip += 1
        return f"127.{1 + self.index // 256}.{self.index % 256}.{n}"


class _Pod:
    def __init__(self, obj: dict, node: _Node, sim: "SimKubelet") -> None:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.key = (self.namespace, self.name)
        self.uid: str = meta["uid"]
        self.generation = meta.get("generation")
        self.node = node
        self.obj = obj
        containers = spec.get("containers") or []
        self.containers = [_Container(c["name"], c.get("image", ""), self.uid) for c in containers]
        self.cmap = {c.name: c for c in self.containers}
        self.cfg = _RunConfig.from_container(containers[0] if containers else {}, sim.epoch_seconds)
        self.phase = "Pending"
        self.reason = ""
        self.message = ""
        self.start_time = _iso()
        self.pod_ip = sim.node_ip if spec.get("hostNetwork") else node.pod_ip()
        self.disruption: dict | None = None
        self.cond_times: dict[str, tuple[str, str]] = {}
        self.version = 0
        self.synced = 0
        self.retries = 0
        self.terminating = False
        self.term_seen_at = 0.0
        self.grace = 30.0
        self.want_delete = False
        self.delete_sent = False
        self.gone = False
        self.task: asyncio.Task | None = None
        self.sleeper: asyncio.Future | None = None
        self.seen_at = sim._loop.time() if sim._loop is not None else 0.0
        self.running_version = 0

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def wake(self) -> None:
        if self.sleeper is not None and not self.sleeper.done():
            self.sleeper.set_result(None)

    def _cond(self, ctype: str, status: bool, reason: str = "", message: str = "") -> dict:
        s = "True" if status else "False"
        prev = self.cond_times.get(ctype)
        when = prev[1] if prev and prev[0] == s else _iso()
        self.cond_times[ctype] = (s, when)
        # None deletes a reason/message left from the previous state (strategic merge by type).
        return {
            "type": ctype,
            "status": s,
            "reason": reason or None,
            "message": message or None,
            "lastProbeTime": None,
            "lastTransitionTime": when,
        }

    def status(self, host_ip: str) -> dict:
        if self.terminal:
            why = "PodCompleted" if self.phase == "Succeeded" else "PodFailed"
            conds = [
                self._cond("PodReadyToStartContainers", False),
                self._cond("Initialized", True, "PodCompleted" if self.phase == "Succeeded" else ""),
                self._cond("Ready", False, why),
                self._cond("ContainersReady", False, why),
            ]
        else:
            ready = bool(self.containers) and all(c.running for c in self.containers)
            unready = [c.name for c in self.containers if not c.running]
            msg = "" if ready else f"containers with unready status: [{' '.join(unready)}]"
            conds = [
                self._cond("PodReadyToStartContainers", True),
                self._cond("Initialized", True),
                self._cond("Ready", ready, "" if ready else "ContainersNotReady", msg),
                self._cond("ContainersReady", ready, "" if ready else "ContainersNotReady", msg),
            ]
        if self.disruption is not None:
            conds.append(self.disruption)
        st: dict[str, Any] = {
            "phase": self.phase,
            "conditions": conds,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.generation is not None:
            st["observedGeneration"] = self.generation
        if self.reason:
            st["reason"] = self.reason
        if self.message:
            st["message"] = self.message
        return st


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class _LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail: int | None = None
    limit: int | None = None
    since_ns: int | None = None
    stderr_only: bool = False

    @staticmethod
    def _bool(q: Mapping[str, str], name: str) -> bool:
        if name not in q:
            return False
        return q[name].lower() not in ("false", "0")

    @classmethod
    def parse(cls, q: Mapping[str, str]) -> "_LogOptions":
        bad = _BadRequest(400, '{"message": "Unable to decode query."}')
        invalid = _BadRequest(422, '{"message": "Invalid request."}')

        def integer(name: str) -> int | None:
            if name not in q:
                return None
            try:
                return int(q[name])
            except ValueError:
                raise bad from None

        opts = cls(
            follow=cls._bool(q, "follow"),
            previous=cls._bool(q, "previous"),
            timestamps=cls._bool(q, "timestamps"),
        )
        tail_text = q.get("tail") or None  # the legacy name; "all" means no limit
        if tail_text is not None and tail_text != "all":
            try:
                opts.tail = int(tail_text)
            except ValueError:
                raise bad from None
        if tail_text is None:
            opts.tail = integer("tailLines")
        opts.limit = integer("limitBytes")
        since_seconds = integer("sinceSeconds")
        since_time = None
        if q.get("sinceTime"):
            try:
                since_time = _parse_rfc3339_ns(q["sinceTime"])
            except ValueError:
                raise bad from None
        stream = q.get("stream")
        if stream not in (None, "All", "Stdout", "Stderr"):
            raise invalid
        opts.stderr_only = stream == "Stderr"
        if (
            (opts.tail is not None and opts.tail < 0)
            or (opts.limit is not None and opts.limit < 1)
            or (since_seconds is not None and since_seconds < 1)
            or (since_seconds is not None and since_time is not None)
            or (stream not in (None, "All") and opts.tail is not None)
        ):
            raise invalid
        if since_seconds is not None:
            opts.since_ns = time.time_ns() - since_seconds * 1_000_000_000
        if since_time is not None:
            opts.since_ns = since_time
        return opts


class _Stats:
    def __init__(self) -> None:
        self.lines = 0
        self.lags: collections.deque[float] = collections.deque(maxlen=200_000)
        self.lag_max = 0.0
        self.patches = 0
        self.patch_errors = 0
        self.patch_seconds = 0.0
        self.patch_max = 0.0
        self.deletes = 0
        self.pods_started = 0
        self.pods_ended = 0
        self.watch_events = 0
        self.log_requests = 0
        self.log_streams = 0
        self.queue_max = 0
        # kubelet-side latencies: pod seen -> Running status stored; deletion seen -> final delete done
        self.start_lat: collections.deque[float] = collections.deque(maxlen=100_000)
        self.stop_lat: collections.deque[float] = collections.deque(maxlen=100_000)

    def lag(self, seconds: float) -> None:
        self.lines += 1
        self.lags.append(seconds)
        if seconds > self.lag_max:
            self.lag_max = seconds

    def snapshot(self) -> dict[str, Any]:
        def pct(xs: Iterable[float], p: float) -> float:
            xs = sorted(xs)
            return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1e3, 2) if xs else 0.0

        lags = sorted(self.lags)
        return {
            "lines": self.lines,
            "lag_p50_ms": pct(lags, 0.50),
            "lag_p99_ms": pct(lags, 0.99),
            "lag_max_ms": round(self.lag_max * 1e3, 2),
            "start_p50_ms": pct(self.start_lat, 0.5),
            "start_max_ms": pct(self.start_lat, 1.0),
            "stop_p50_ms": pct(self.stop_lat, 0.5),
            "stop_max_ms": pct(self.stop_lat, 1.0),
            "status_patches": self.patches,
            "status_patch_errors": self.patch_errors,
            "status_patch_mean_ms": round(self.patch_seconds / self.patches * 1e3, 2) if self.patches else 0.0,
            "status_patch_max_ms": round(self.patch_max * 1e3, 2),
            "status_queue_max": self.queue_max,
            "pod_deletes": self.deletes,
            "pods_started": self.pods_started,
            "pods_ended": self.pods_ended,
            "watch_events": self.watch_events,
            "log_requests": self.log_requests,
            "log_streams_open": self.log_streams,
        }


# --------------------------------------------------------------------------
# The simulated kubelet
# --------------------------------------------------------------------------


class SimKubelet:
    """Simulated kubelet for a set of GPU nodes; see the module docstring.

    ``kubeconfig`` must allow managing nodes, leases and pods (the admin
    kubeconfig of a :class:`~kubesweep.devcluster.ControlPlane`).
    ``serving_cert``/``serving_key`` must be valid for ``node_ip`` and signed
    by the apiserver's ``--kubelet-certificate-authority``; ``client_ca``, if
    given, is required to have signed the client certificate of every caller
    of the kubelet API (the apiserver's ``--kubelet-client-certificate``).
    """

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        serving_cert: str | os.PathLike[str],
        serving_key: str | os.PathLike[str],
        nodes: Sequence[NodeSpec] | None = None,
        epoch_seconds: float = 1.0,
        *,
        client_ca: str | os.PathLike[str] | None = None,
        context: str | None = None,
        node_ip: str = "127.0.0.1",
        port: int = 0,
        lease_seconds: int = 40,
        renew_interval: float = 10.0,
        status_interval: float = 60.0,
        status_workers: int = 8,
        cleanup_pods: bool = True,
        ready_timeout: float = 60.0,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.serving_cert = Path(serving_cert)
        self.serving_key = Path(serving_key)
        self.client_ca = Path(client_ca) if client_ca else None
        self.context = context
        self.node_specs = list(nodes) if nodes is not None else gpu_nodes(2)
        names = [n.name for n in self.node_specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate node names: {names}")
        self.epoch_seconds = float(epoch_seconds)
        self.node_ip = node_ip
        self.port = port
        self.lease_seconds = lease_seconds
        self.renew_interval = renew_interval
        self.status_interval = status_interval
        self.status_workers = max(1, status_workers)
        self.cleanup_pods = cleanup_pods
        self.ready_timeout = ready_timeout

        self._nodes = {s.name: _Node(s, i) for i, s in enumerate(self.node_specs)}
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._stats = _Stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._api: _Api | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._queue: asyncio.Queue | None = None
        self._queued: set[tuple[str, str]] = set()
        self._inflight: set[tuple[str, str]] = set()
        self._redo: set[tuple[str, str]] = set()
        self._stopping = False
        self._started = False
        self._watch_synced: asyncio.Event | None = None
        self._kubelet_version = "v0.0.0-sim"

    @classmethod
    def for_control_plane(cls, cp: Any, nodes: Sequence[NodeSpec] | None = None, epoch_seconds: float = 1.0, **kwargs: Any) -> "SimKubelet":
        """A SimKubelet wired to a started ControlPlane (admin kubeconfig, its kubelet certs)."""
        return cls(
            cp.kubeconfig,
            cp.kubelet_serving_cert_file,
            cp.kubelet_serving_key_file,
            nodes,
            epoch_seconds,
            client_ca=kwargs.pop("client_ca", cp.kubelet_client_ca_file),
            **kwargs,
        )

    # -- public, thread-safe enough read accessors ---------------------------

    @property
    def node_names(self) -> list[str]:
        return list(self._nodes)

    def stats(self) -> dict[str, Any]:
        """Counters, and latencies in ms: ``lag_*`` from each metric line's scheduled
        time to its write, ``start_*`` from a pod's arrival to its stored Running
        status, ``stop_*`` from a deletion to the final delete (includes the
        simulated SIGTERM handling time). Callable from any thread."""
        loop = self._loop
        if loop is not None and loop.is_running() and not _on_loop(loop):
            return asyncio.run_coroutine_threadsafe(self._astats(), loop).result(10)
        return self._snapshot()

    async def _astats(self) -> dict[str, Any]:
        return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        snap = self._stats.snapshot()
        snap["pods_tracked"] = len(self._pods)
        snap["pods_running"] = sum(1 for p in self._pods.values() if p.phase == "Running")
        return snap

    def log_text(self, namespace: str, pod: str, container: str | None = None) -> str | None:
        """The log of a tracked pod's container (first container by default), or None."""
        p = self._pods.get((namespace, pod))
        if p is None or not p.containers:
            return None
        c = p.cmap.get(container) if container else p.containers[0]
        return c.log.text() if c else None

    # -- sync lifecycle (own loop in a thread) -------------------------------

    def __enter__(self) -> "SimKubelet":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float | None = None) -> "SimKubelet":
        """Start on a new event loop in a daemon thread; return once the nodes are Ready."""
        if self._thread is not None:
            raise SimKubeletError("already started")
        ready = threading.Event()
        error: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.astart())
            except BaseException as e:  # noqa: BLE001 - re-raised in start()
                error.append(e)
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(self.astop())
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name="simkubelet", daemon=True)
        self._thread.start()
        if not ready.wait(timeout if timeout is not None else self.ready_timeout + 60):
            raise SimKubeletError("timed out starting the simulated kubelet")
        if error:
            self._thread.join(5)
            self._thread = None
            raise error[0]
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the simulator started with :meth:`start`; delete its nodes."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self.astop(), loop)
            try:
                fut.result(timeout)
            except Exception as e:  # noqa: BLE001
                log.warning("stopping the simulated kubelet: %s", e)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    # -- async lifecycle -------------------------------------------------------

    async def __aenter__(self) -> "SimKubelet":
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    async def astart(self) -> "SimKubelet":
        """Start on the running loop: kubelet server, nodes, pod watch; wait for Ready nodes."""
        if self._started:
            raise SimKubeletError("already started")
        self._started = True
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._watch_synced = asyncio.Event()
        access = _load_kubeconfig(self.kubeconfig, self.context)
        self._api = _Api(access, pool=self.status_workers + 8)
        await self._start_server()
        try:
            version = await self._api.call("GET", "/version")
            self._kubelet_version = version.get("gitVersion") or self._kubelet_version
        except (aiohttp.ClientError, OSError, _ApiError, asyncio.TimeoutError) as e:
            raise SimKubeletError(f"cannot reach the apiserver at {access.server}: {e}") from e
        for _ in range(self.status_workers):
            self._spawn(self._status_worker())
        self._spawn(self._watch_loop())
        await asyncio.gather(*(self._register_node(n) for n in self._nodes.values()))
        self._spawn(self._heartbeat_loop())
        await self._wait_nodes_ready()
        try:
            await asyncio.wait_for(self._watch_synced.wait(), self.ready_timeout)
        except asyncio.TimeoutError:
            raise SimKubeletError(f"could not list pods within {self.ready_timeout:.0f}s (see the log)") from None
        log.info(
            "simulated kubelet: %d node(s) ready, kubelet API on https://%s:%d",
            len(self._nodes), self.node_ip, self.port,
        )
        return self

    async def astop(self) -> None:
        """Stop the runs, delete the nodes (and the pods left on them), close the server."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        api = self._api
        for task in self._tasks:
            task.cancel()
        pods = list(self._pods.values())
        for pod in pods:
            if pod.task is not None:
                pod.task.cancel()
        for task in [*self._tasks, *(p.task for p in pods if p.task is not None)]:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        for pod in pods:
            for c in pod.containers:
                c.log.close()
        if api is not None:
            await asyncio.gather(
                *(self._delete_node(n) for n in self._nodes.values()), return_exceptions=True
            )
            if self.cleanup_pods:
                await asyncio.gather(*(self._force_delete(p) for p in pods), return_exceptions=True)
        self._pods.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if api is not None:
            await api.close()
            self._api = None
        self._started = False

    async def serve_forever(self, stop: asyncio.Event | None = None) -> None:
        """astart(), run until ``stop`` is set (or the task is cancelled), astop()."""
        await self.astart()
        try:
            if stop is None:
                await asyncio.Event().wait()
            else:
                await stop.wait()
        finally:
            await asyncio.shield(self.astop())

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        return task

    # -- kubelet HTTPS server ------------------------------------------------

    async def _start_server(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.serving_cert), str(self.serving_key))
        if self.client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(self.client_ca))
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._handle_logs)
        app.router.add_get("/healthz", self._handle_healthz)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.node_ip else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.node_ip, self.port))
        sock.setblocking(False)
        site = web.SockSite(self._runner, sock, ssl_context=ctx, backlog=1024)
        await site.start()
        self.port = sock.getsockname()[1]

    async def _handle_healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _handle_logs(self, request: web.Request) -> web.StreamResponse:
        self._stats.log_requests += 1
        ns = request.match_info["namespace"]
        name = request.match_info["pod"]
        cname = request.match_info["container"]
        try:
            opts = _LogOptions.parse(request.query)
        except _BadRequest as e:
            return web.Response(status=e.status, text=e.message)
        pod = self._pods.get((ns, name))
        if pod is None:
            return web.Response(status=404, text=f'pod "{name}" does not exist')
        c = pod.cmap.get(cname)
        if c is None:
            return web.Response(status=404, text=f'container "{cname}" not found in pod "{name}"')
        if opts.previous:
            return web.Response(
                status=400, text=f'previous terminated container "{cname}" in pod "{name}" not found'
            )
        if c.state == "waiting":
            return web.Response(
                status=400, text=f'container "{cname}" in pod "{name}" is waiting to start: {c.reason or "ContainerCreating"}'
            )
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        self._stats.log_streams += 1
        try:
            await self._stream_log(resp, c.log, opts)
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self._stats.log_streams -= 1
        with contextlib.suppress(ConnectionError, RuntimeError):
            await resp.write_eof()
        return resp

    @staticmethod
    async def _stream_log(resp: web.StreamResponse, lg: _Log, opts: _LogOptions) -> None:
        lines = lg.lines
        i = max(0, len(lines) - opts.tail) if opts.tail is not None else 0
        remaining = opts.limit if opts.limit is not None else -1
        since = opts.since_ns
        ts = opts.timestamps
        while True:
            closed = lg.closed
            end = len(lines)
            if not opts.stderr_only and i < end:
                buf = bytearray()
                for j in range(i, end):
                    t_ns, t_b, text = lines[j]
                    if since is not None and t_ns < since:
                        continue
                    piece = (t_b + b" " + text + b"\n") if ts else (text + b"\n")
                    if remaining >= 0 and len(piece) >= remaining:
                        buf += piece[:remaining]
                        remaining = 0
                        break
                    buf += piece
                    if remaining > 0:
                        remaining -= len(piece)
                if buf:
                    await resp.write(bytes(buf))
            i = end
            if remaining == 0 or not opts.follow:
                return
            if closed and i >= len(lines):
                return
            if i >= len(lines) and not lg.closed:
                await lg.changed()

    # -- nodes ---------------------------------------------------------------

    def _node_status(self, node: _Node, *, full: bool) -> dict:
        now = _iso()
        spec = node.spec

        def cond(ctype: str, status: str, reason: str, message: str) -> dict:
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                **({"lastTransitionTime": now} if full else {}),
            }

        status: dict[str, Any] = {
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status (simulated)"),
            ]
        }
        if full:
            res = spec.resources()
            machine = hashlib.md5(spec.name.encode()).hexdigest()
            status.update(
                capacity=res,
                allocatable=dict(res),
                addresses=[
                    {"type": "InternalIP", "address": self.node_ip},
                    {"type": "Hostname", "address": spec.name},
                ],
                daemonEndpoints={"kubeletEndpoint": {"Port": self.port}},
                nodeInfo={
                    "machineID": machine,
                    "systemUUID": machine,
                    "bootID": hashlib.md5(f"{spec.name}/{time.time()}".encode()).hexdigest(),
                    "kernelVersion": platform.release(),
                    "osImage": "kubesweep simulated GPU node",
                    "containerRuntimeVersion": "sim://1.0.0",
                    "kubeletVersion": self._kubelet_version,
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            )
        return status

    async def _register_node(self, node: _Node) -> None:
        assert self._api is not None
        spec = node.spec
        meta = {
            "name": spec.name,
            "labels": spec.all_labels(),
            "annotations": {SIM_ANNOTATION: "true", "node.alpha.kubernetes.io/ttl": "0", **spec.annotations},
        }
        body = {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": {"taints": spec.taints}}
        try:
            obj = await self._api.call("POST", "/api/v1/nodes", body)
        except _ApiError as e:
            if e.status != 409:
                raise SimKubeletError(f"registering node {spec.name}: {e}") from e
            # Left over from an earlier run: take it over.
            obj = await self._api.call(
                "PATCH",
                f"/api/v1/nodes/{spec.name}",
                {"metadata": meta, "spec": {"taints": spec.taints, "unschedulable": None}},
                content_type="application/merge-patch+json",
            )
        await self._api.call(
            "PATCH",
            f"/api/v1/nodes/{spec.name}/status",
            {"status": self._node_status(node, full=True)},
            content_type="application/strategic-merge-patch+json",
            want_body=False,
        )
        await self._put_lease(node, obj["metadata"]["uid"])

    async def _put_lease(self, node: _Node, node_uid: str | None = None) -> None:
        assert self._api is not None
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node.name}"
        try:
            await self._api.call(
                "PATCH", path, {"spec": {"holderIdentity": node.name, "leaseDurationSeconds": self.lease_seconds, "renewTime": _micro()}},
                content_type="application/merge-patch+json", want_body=False,
            )
            return
        except _ApiError as e:
            if e.status != 404:
                raise
        if node_uid is None:
            node_uid = (await self._api.call("GET", f"/api/v1/nodes/{node.name}"))["metadata"]["uid"]
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": node.name,
                "namespace": "kube-node-lease",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node_uid}],
            },
            "spec": {
                "holderIdentity": node.name,
                "leaseDurationSeconds": self.lease_seconds,
                "renewTime": _micro(),
            },
        }
        await self._api.call(
            "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease, want_body=False
        )

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_status = loop.time()
        while True:
            await asyncio.sleep(self.renew_interval)
            do_status = loop.time() - last_status >= self.status_interval
            if do_status:
                last_status = loop.time()
            results = await asyncio.gather(
                *(self._heartbeat(n, do_status) for n in self._nodes.values()), return_exceptions=True
            )
            for node, r in zip(self._nodes.values(), results):
                if isinstance(r, BaseException):
                    log.warning("heartbeat of node %s failed: %s", node.name, r)

    async def _heartbeat(self, node: _Node, status: bool) -> None:
        assert self._api is not None
        try:
            await self._put_lease(node)
            if status:
                await self._api.call(
                    "PATCH",
                    f"/api/v1/nodes/{node.name}/status",
                    {"status": self._node_status(node, full=False)},
                    content_type="application/strategic-merge-patch+json",
                    want_body=False,
                )
        except _ApiError as e:
            if e.status == 404:
                log.warning("node %s disappeared: registering it again", node.name)
                await self._register_node(node)
            else:
                raise

    async def _wait_nodes_ready(self) -> None:
        assert self._api is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        waiting = set(self._nodes)
        while waiting:
            for name in sorted(waiting):
                obj = await self._api.call("GET", f"/api/v1/nodes/{name}")
                taints = (obj.get("spec") or {}).get("taints") or []
                conds = {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}
                if conds.get("Ready") == "True" and not any(t.get("key") == NOT_READY_TAINT for t in taints):
                    waiting.discard(name)
            if not waiting:
                return
            if loop.time() > deadline:
                raise SimKubeletError(
                    f"nodes {sorted(waiting)} still not schedulable after {self.ready_timeout:.0f}s "
                    f"(is the node lifecycle controller running?)"
                )
            await asyncio.sleep(0.2)

    async def _delete_node(self, node: _Node) -> None:
        assert self._api is not None
        for path in (
            f"/api/v1/nodes/{node.name}",
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node.name}",
        ):
            try:
                await self._api.call("DELETE", path, want_body=False)
            except _ApiError as e:
                if e.status != 404:
                    log.warning("deleting %s: %s", path, e)

    # -- pod watch -------------------------------------------------------------

    async def _watch_loop(self) -> None:
        assert self._api is not None and self._watch_synced is not None
        rv: str | None = None
        params = {"fieldSelector": "spec.nodeName!="}
        while True:
            try:
                if rv is None:
                    rv = await self._relist(params)
                    self._watch_synced.set()
                async for ev in self._api.watch(
                    "/api/v1/pods",
                    {**params, "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "600"},
                ):
                    etype, obj = ev.get("type"), ev.get("object") or {}
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                            break
                        raise _ApiError(int(obj.get("code") or 500), json.dumps(obj), "watch pods")
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if etype == "BOOKMARK":
                        continue
                    self._stats.watch_events += 1
                    self._on_pod_event(etype, obj)
            except asyncio.CancelledError:
                raise
            except _ApiError as e:
                if e.status == 410:
                    rv = None
                else:
                    log.warning("pod watch: %s", e)
                    await asyncio.sleep(1.0)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as e:
                log.warning("pod watch interrupted: %s", e)
                await asyncio.sleep(1.0)

    async def _relist(self, params: Mapping[str, str]) -> str:
        assert self._api is not None
        seen: set[tuple[str, str]] = set()
        cont = ""
        while True:
            page = await self._api.call(
                "GET", "/api/v1/pods", params={**params, "limit": "500", **({"continue": cont} if cont else {})}
            )
            for obj in page.get("items") or []:
                seen.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))
                self._on_pod_event("SYNC", obj)
            cont = (page.get("metadata") or {}).get("continue") or ""
            if not cont:
                rv = page["metadata"]["resourceVersion"]
                break
        for key in [k for k in self._pods if k not in seen]:
            self._forget(self._pods[key])
        return rv

    def _on_pod_event(self, etype: str | None, obj: dict) -> None:
        if self._stopping:
            return
        node = self._nodes.get((obj.get("spec") or {}).get("nodeName") or "")
        if node is None:
            return
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        pod = self._pods.get(key)
        if pod is not None and pod.uid != meta["uid"]:
            self._forget(pod)  # an earlier pod of that name, its DELETED missed
            pod = None
        if etype == "DELETED":
            if pod is not None:
                self._forget(pod)
            return
        if pod is None:
            pod = self._admit(obj, node)
        else:
            pod.obj = obj
        if meta.get("deletionTimestamp"):
            self._on_deletion(pod, meta)

    def _admit(self, obj: dict, node: _Node) -> _Pod:
        pod = _Pod(obj, node, self)
        self._pods[pod.key] = pod
        status = obj.get("status") or {}
        phase = status.get("phase") or "Pending"
        if phase in ("Succeeded", "Failed"):
            # Ended before we (re)started: keep the status as it is, empty logs.
            pod.phase = phase
            pod.start_time = status.get("startTime") or pod.start_time
            for c in pod.containers:
                c.state = "terminated"
                c.log.close()
            pod.synced = pod.version
        elif phase == "Running" or any(
            "running" in (cs.get("state") or {}) for cs in status.get("containerStatuses") or []
        ):
            # Started by an earlier simulator whose state is lost: like a node reboot.
            pod.start_time = status.get("startTime") or pod.start_time
            pod.pod_ip = status.get("podIP") or pod.pod_ip
            for c in pod.containers:
                c.started_at = pod.start_time
                c.terminate(
                    137, "ContainerStatusUnknown",
                    "The container could not be located when the pod was terminated",
                )
            pod.phase = "Failed"
            self._push(pod)
        else:
            pod.task = asyncio.ensure_future(self._run(pod))
        return pod

    def _forget(self, pod: _Pod) -> None:
        pod.gone = True
        if self._pods.get(pod.key) is pod:
            del self._pods[pod.key]
        if pod.task is not None and not pod.task.done():
            pod.task.cancel()
        for c in pod.containers:
            c.log.close()

    def _on_deletion(self, pod: _Pod, meta: Mapping[str, Any]) -> None:
        if pod.terminating:
            return
        pod.terminating = True
        pod.term_seen_at = asyncio.get_running_loop().time()
        grace = meta.get("deletionGracePeriodSeconds")
        pod.grace = float(grace) if grace is not None else 30.0
        if pod.terminal or pod.task is None or pod.task.done():
            pod.want_delete = True
            self._push(pod)
        else:
            pod.wake()

    async def _force_delete(self, pod: _Pod) -> None:
        assert self._api is not None
        try:
            await self._api.call(
                "DELETE",
                f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
                {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": pod.uid}},
                want_body=False,
            )
        except _ApiError as e:
            if e.status not in (404, 409):
                log.warning("deleting pod %s/%s: %s", pod.namespace, pod.name, e)

    # -- pod status sync (a small work queue: one in flight per pod) -----------

    def _push(self, pod: _Pod) -> None:
        pod.version += 1
        self._enqueue(pod.key)

    def _enqueue(self, key: tuple[str, str]) -> None:
        assert self._queue is not None
        if key in self._inflight:
            self._redo.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)
            if self._queue.qsize() > self._stats.queue_max:
                self._stats.queue_max = self._queue.qsize()

    async def _status_worker(self) -> None:
        assert self._queue is not None
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            pod = self._pods.get(key)
            if pod is None or pod.gone:
                continue
            self._inflight.add(key)
            try:
                await self._sync(pod)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - retried
                self._stats.patch_errors += 1
                pod.retries += 1
                delay = min(10.0, 0.2 * 2 ** min(pod.retries, 6))
                log.warning("status of pod %s/%s: %s (retrying in %.1fs)", pod.namespace, pod.name, e, delay)
                asyncio.get_running_loop().call_later(delay, self._retry, key, pod)
            finally:
                self._inflight.discard(key)
                if key in self._redo:
                    self._redo.discard(key)
                    self._enqueue(key)

    def _retry(self, key: tuple[str, str], pod: _Pod) -> None:
        if not self._stopping and self._pods.get(key) is pod:
            self._enqueue(key)

    async def _sync(self, pod: _Pod) -> None:
        assert self._api is not None
        path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"
        if pod.synced < pod.version:
            version = pod.version
            body = {"metadata": {"uid": pod.uid}, "status": pod.status(self.node_ip)}
            t0 = time.perf_counter()
            try:
                await self._api.call(
                    "PATCH", path + "/status", body,
                    content_type="application/strategic-merge-patch+json", want_body=False,
                )
            except _ApiError as e:
                if e.status in (404, 409):
                    return  # gone, or another pod of that name now
                if e.status == 422:
                    self._stats.patch_errors += 1
                    log.error("status of pod %s/%s rejected: %s", pod.namespace, pod.name, e)
                    pod.synced = version
                    return
                raise
            dt = time.perf_counter() - t0
            self._stats.patches += 1
            self._stats.patch_seconds += dt
            self._stats.patch_max = max(self._stats.patch_max, dt)
            pod.synced = version
            pod.retries = 0
            if pod.running_version and version >= pod.running_version:
                self._stats.start_lat.append(self._loop.time() - pod.seen_at)  # type: ignore[union-attr]
                pod.running_version = 0
        if pod.want_delete and not pod.delete_sent and pod.synced == pod.version and pod.terminal:
            try:
                await self._api.call(
                    "DELETE", path,
                    {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": pod.uid}},
                    want_body=False,
                )
            except _ApiError as e:
                if e.status not in (404, 409):
                    raise
            pod.delete_sent = True
            self._stats.deletes += 1
            if pod.term_seen_at:
                self._stats.stop_lat.append(self._loop.time() - pod.term_seen_at)  # type: ignore[union-attr]

    # -- the run -----------------------------------------------------------------

    async def _sleep_until(self, pod: _Pod, deadline: float) -> bool:
        """Sleep until loop time ``deadline``; True at once if the pod is being deleted."""
        if pod.terminating:
            return True
        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            return False
        fut = loop.create_future()
        pod.sleeper = fut
        handle = loop.call_at(deadline, _resolve, fut) if deadline != math.inf else None
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()
            pod.sleeper = None
        return pod.terminating

    async def _run(self, pod: _Pod) -> None:
        try:
            await self._play(pod)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a bug here must not kill the loop
            log.exception("simulating pod %s/%s", pod.namespace, pod.name)
            if not pod.terminal:
                for c in pod.containers:
                    c.terminate(1, "Error", "simulator error")
                self._end(pod, "Failed")

    async def _play(self, pod: _Pod) -> None:
        loop = asyncio.get_running_loop()
        cfg = pod.cfg
        if not pod.containers:
            return
        if cfg.start_seconds > 0:
            self._push(pod)  # Pending, containers ContainerCreating
            if await self._sleep_until(pod, loop.time() + cfg.start_seconds):
                return await self._shutdown(pod)
        t0 = loop.time()
        for c in pod.containers:
            c.start()
        pod.phase = "Running"
        self._stats.pods_started += 1
        self._push(pod)
        pod.running_version = pod.version
        main = pod.containers[0]
        eps = cfg.epoch_seconds
        fail = cfg.failure if cfg.failure is not None and cfg.failure.epoch <= cfg.epochs else None
        for epoch in range(1, fail.epoch if fail is not None else cfg.epochs + 1):
            deadline = t0 + epoch * eps
            if await self._sleep_until(pod, deadline):
                return await self._shutdown(pod)
            self._stats.lag(loop.time() - deadline)
            main.log.append(f"epoch={epoch} {cfg.metric}={metric_value(cfg.quality, epoch, cfg.goal):.6f}")
        if fail is not None:
            if await self._sleep_until(pod, t0 + fail.epoch * eps):
                return await self._shutdown(pod)
            if fail.kind == "hang":
                await self._sleep_until(pod, math.inf)
                return await self._shutdown(pod)
            return self._fail(pod, fail)
        main.log.append("done")
        for c in pod.containers:
            c.terminate(0, "Completed")
        self._end(pod, "Succeeded")

    def _end(self, pod: _Pod, phase: str, *, reason: str = "", message: str = "") -> None:
        pod.phase = phase
        pod.reason = reason or pod.reason
        pod.message = message or pod.message
        if pod.terminating:
            pod.want_delete = True
        self._stats.pods_ended += 1
        self._push(pod)

    def _fail(self, pod: _Pod, fail: _Failure) -> None:
        main, others = pod.containers[0], pod.containers[1:]
        if fail.kind == "evict":
            msg = (
                "The node was low on resource: memory. Threshold quantity: 100Mi, available: 64Mi. "
                f"Container {main.name} was using 61Gi, request is 0, has larger consumption of memory. "
            )
            for c in pod.containers:
                c.terminate(137, "Error")
            pod.disruption = {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "message": msg,
                "lastProbeTime": None,
                "lastTransitionTime": _iso(),
            }
            return self._end(pod, "Failed", reason="Evicted", message=msg)
        if fail.kind == "oom":
            main.terminate(137, "OOMKilled")
        elif fail.code == 0:
            main.terminate(0, "Completed")
        else:
            main.terminate(fail.code, "Error")
        for c in others:
            c.terminate(0, "Completed")
        failed = any(c.exit_code != 0 for c in pod.containers)
        self._end(pod, "Failed" if failed else "Succeeded")

    async def _shutdown(self, pod: _Pod) -> None:
        """The pod is being deleted: SIGTERM, exit (or SIGKILL after the grace period)."""
        loop = asyncio.get_running_loop()
        cfg = pod.cfg
        main = pod.containers[0]
        running = [c for c in pod.containers if c.running]
        if not running:
            # Never started: nothing to signal.
            for c in pod.containers:
                c.terminate(137, "ContainerStatusUnknown", "The container could not be located when the pod was terminated")
            return self._end(pod, "Failed")
        if main.running:
            main.log.append("stopping: received SIGTERM")
        kill_at = pod.term_seen_at + pod.grace
        exit_at = kill_at if cfg.ignore_sigterm else min(kill_at, loop.time() + cfg.stop_seconds)
        code = 137 if exit_at >= kill_at else 143
        delay = exit_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for c in pod.containers:
            c.terminate(code, "Error")
        self._end(pod, "Failed")


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
