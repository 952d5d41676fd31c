#!/usr/bin/env python3
"""Benchmark: the real operator process, one sweep of 1,000 runs on 200 simulated GPUs.

Starts a real control plane (`kubesweep.devcluster.ControlPlane`, its own temporary workdir, the
API server writing an audit log), 25 simulated 8-GPU nodes (`SimKubelet`, ~1 s per epoch), the
CRDs, and `python -m kubesweep.cli operator` as its own process under its own identity (a client
certificate for user `kubesweep-operator`, group system:masters). Then applies ONE Sweep: method
random over `lr` (log-uniform 1e-4..1, which the simulator turns into a learning curve) with
`epochs: 20`, `run_cap` 1,000, `parallelism` 200, one GPU per run, Hyperband max_iter 20, s 2,
eta 3 (bands 2, 6), and waits for phase Succeeded (hard timeout), then tears everything down.

What it measures, and where each time stamp comes from (all on this machine's one clock):

* a metric line's write time: the simulator's own record of each line (this process subclasses
  SimKubelet to keep each pod's log when the pod is forgotten; simkubelet.py is not changed);
* when the operator's event loop handled that row: the operator's `--record-dir` file (one line
  per row, written and flushed as the row is handed to the engine), tailed here every 20 ms;
* which row triggered each stop: the record file replayed through `SweepTracker` (the operator's
  engine), which also checks the replayed decisions equal the SweepRuns' stored decisions;
* the operator's requests (Job create, Job suspend patch, ...): the API server's audit log
  (`stageTimestamp` of ResponseComplete, microseconds), attributed by user name;
* Jobs and pods: this process's own watches (time of arrival of each event): pod bound,
  Running, terminal, deletion requested, DELETED; Job `spec.suspend` true;
* the operator's CPU (utime+stime) and memory (VmRSS, VmHWM, threads) from /proc every second;
  system CPU and the load average likewise, and the CPU other processes on the machine used;
* the operator's own `kubesweep_decision_latency_seconds` histogram, scraped at the end.

    .venv/bin/python benchmarks/operator_scale.py --quick         # smoke: 60 runs, parallelism 20, 3 nodes
    .venv/bin/python benchmarks/operator_scale.py                 # 1,000 runs, parallelism 200, 25 nodes
    .venv/bin/python benchmarks/operator_scale.py --runs 200      # the same at 200 runs (writes/run comparison)
    .venv/bin/python benchmarks/operator_scale.py --profile       # also py-spy the operator (perturbs timings)

Results are merged into results/operator_scale.json under a label (`runs<N>-p<P>`, or --label);
--quick writes nothing unless --json is given.
"""
from __future__ import annotations

import argparse
import collections
import datetime as _dt
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
try:
    import kubesweep  # noqa: F401
except ImportError:  # run with a python that lacks the editable install
    sys.path.insert(0, str(ROOT / "operator"))

import yaml  # noqa: E402

from kubesweep.devcluster import ControlPlane, build_binaries  # noqa: E402
from kubesweep.devcluster.simkubelet import SimKubelet, gpu_nodes  # noqa: E402
from kubesweep.engine import config as sweep_config  # noqa: E402
from kubesweep.engine.rows import metric_value  # noqa: E402
from kubesweep.engine.tracker import FAILED, SUCCEEDED, SweepTracker  # noqa: E402

POOL_LABEL = "kubesweep.dev/sim-pool"
LABEL_RUN = "kubesweep.io/run"
OPERATOR_USER = "kubesweep-operator"
ADMIN_USER = "kubesweep-admin"  # the ControlPlane's admin cert: the simulator, kubectl and this process
JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
SWEEP = "scale"
METRIC = "val_loss"
DEFAULT_JSON = HERE / "results" / "operator_scale.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Metadata for every request of the operator and every write of anyone else; nothing else.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["%s"]
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: None
""" % OPERATOR_USER


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def pct(xs: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def dist(xs: Iterable[float | None]) -> dict[str, Any]:
    v = [x for x in xs if x is not None]
    if not v:
        return {"n": 0}
    return {"n": len(v), "p50": _r(pct(v, 50)), "p90": _r(pct(v, 90)), "p99": _r(pct(v, 99)),
            "max": _r(max(v)), "min": _r(min(v)), "mean": _r(sum(v) / len(v))}


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def hist_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus histogram_quantile over cumulative (le, count) buckets."""
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0)
        prev_le, prev_c = le, c
    return prev_le


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------------------------------
# The API server, as the admin (this process's watches and polls)
# --------------------------------------------------------------------------------------------------


class Api:
    def __init__(self, cp: ControlPlane):
        self.host, self.port = "127.0.0.1", cp.apiserver_port
        self.ctx = ssl.create_default_context(cafile=str(cp.ca_file))
        self.ctx.load_cert_chain(str(cp.admin_cert_file), str(cp.admin_key_file))

    def connection(self, timeout: float | None = 30) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def get(self, path: str, timeout: float = 60) -> Any:
        conn = self.connection(timeout)
        try:
            conn.request("GET", path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {body[:300]!r}")
            return json.loads(body)
        finally:
            conn.close()

    def get_text(self, path: str, timeout: float = 60) -> str:
        conn = self.connection(timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.read().decode()
        finally:
            conn.close()


class Watcher(threading.Thread):
    """List, then watch one collection; calls on_event(type, obj, arrival_time) in this thread."""

    def __init__(self, api: Api, path: str, on_event: Callable[[str, dict, float], None], name: str):
        super().__init__(daemon=True, name=name)
        self.api, self.path, self.on_event = api, path, on_event
        self.stopping = threading.Event()
        self.synced = threading.Event()
        self.conn: http.client.HTTPSConnection | None = None
        self.events = 0
        self.relists = 0
        self.errors: list[str] = []

    def run(self) -> None:
        rv: str | None = None
        while not self.stopping.is_set():
            try:
                if rv is None:
                    self.relists += 1
                    lst = self.api.get(self.path)
                    t = time.time()
                    for obj in lst.get("items") or []:
                        self.on_event("SYNC", obj, t)
                    rv = lst["metadata"]["resourceVersion"]
                    self.synced.set()
                self.conn = self.api.connection(timeout=400)
                self.conn.request("GET", f"{self.path}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
                                         f"&timeoutSeconds=300", headers={"Accept": "application/json"})
                resp = self.conn.getresponse()
                if resp.status == 410:
                    rv = None
                    continue
                if resp.status != 200:
                    raise RuntimeError(f"watch {self.path}: {resp.status} {resp.read()[:300]!r}")
                while True:
                    line = resp.readline()
                    if not line:
                        break
                    t = time.time()
                    ev = json.loads(line)
                    etype, obj = ev.get("type"), ev.get("object") or {}
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                            break
                        raise RuntimeError(f"watch {self.path}: {obj}")
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if etype == "BOOKMARK":
                        continue
                    self.events += 1
                    self.on_event(etype, obj, t)
            except Exception as exc:  # noqa: BLE001 - reconnect
                if self.stopping.is_set():
                    return
                self.errors.append(f"{time.time():.3f} {exc!r}"[:300])
                time.sleep(0.5)
            finally:
                if self.conn is not None:
                    self.conn.close()

    def stop(self) -> None:
        self.stopping.set()
        conn = self.conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Observed:
    """What the watches saw: per Job and per pod, the arrival time of each transition."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def on_job(self, etype: str, obj: dict, t: float) -> None:
        meta = obj["metadata"]
        with self.lock:
            j = self.jobs.setdefault(meta["name"], {"added": t, "synced": etype == "SYNC"})
            if (obj.get("spec") or {}).get("suspend") and "suspend" not in j:
                j["suspend"] = t
            if etype == "DELETED":
                j["deleted"] = t

    def on_pod(self, etype: str, obj: dict, t: float) -> None:
        meta = obj["metadata"]
        run = (meta.get("labels") or {}).get(LABEL_RUN)
        if not run:
            return
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        with self.lock:
            p = self.pods.setdefault(meta["name"], {"run": run, "added": t, "synced": etype == "SYNC"})
            if spec.get("nodeName") and "bound" not in p:
                p["bound"], p["node"] = t, spec["nodeName"]
            phase = status.get("phase")
            if phase == "Running" and "running" not in p:
                p["running"] = t
            if phase in ("Succeeded", "Failed") and "terminal" not in p:
                p["terminal"], p["phase"] = t, phase
            if meta.get("deletionTimestamp") and "deletion" not in p:
                p["deletion"] = t
            if etype == "DELETED":
                p["deleted"] = t


# --------------------------------------------------------------------------------------------------
# The simulator, keeping every pod's log (write times) after the pod is gone
# --------------------------------------------------------------------------------------------------


class RecordingSim(SimKubelet):
    """SimKubelet that keeps the first container's log lines (write time ns, text) of every pod."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.captured: dict[tuple[str, str], tuple[str, list[tuple[int, str]]]] = {}

    def _capture(self, pod: Any) -> None:
        if not pod.containers:
            return
        run = ((pod.obj.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN, "")
        self.captured[pod.key] = (run, [(ns, text.decode()) for ns, _, text in pod.containers[0].log.lines])

    def _forget(self, pod: Any) -> None:
        self._capture(pod)
        super()._forget(pod)

    async def _capture_all(self) -> None:
        for pod in list(self._pods.values()):
            self._capture(pod)

    def capture_all(self) -> None:
        import asyncio

        if self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._capture_all(), self._loop).result(30)


# --------------------------------------------------------------------------------------------------
# The operator's record file, tailed: when its event loop handled each row
# --------------------------------------------------------------------------------------------------


class RecordTail(threading.Thread):
    def __init__(self, path: Path, interval: float = 0.02):
        super().__init__(daemon=True, name="record-tail")
        self.path, self.interval = path, interval
        self.recv: dict[tuple[str, Any], float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        f = None
        buf = b""
        while not self.stopping.is_set():
            if f is None:
                try:
                    f = open(self.path, "rb")
                except FileNotFoundError:
                    time.sleep(self.interval)
                    continue
            data = f.read()
            if data:
                t = time.time()
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if "epoch" in obj:
                        self.recv.setdefault((obj.get("run"), obj["epoch"]), t)
            else:
                time.sleep(self.interval)
        if f is not None:
            f.close()


# --------------------------------------------------------------------------------------------------
# CPU and memory
# --------------------------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a process (all its threads), seconds."""
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = s[s.rfind(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])  # kB
            elif k == "Threads":
                out[k] = int(v)
    except OSError:
        pass
    return out


def schedstat(pid: int, tid: int | None = None) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) of one thread (default: the main one)."""
    try:
        on, wait, _ = Path(f"/proc/{pid}/task/{tid or pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return int(on) / 1e9, int(wait) / 1e9


def system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]
    total = sum(f[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def all_processes() -> dict[int, tuple[str, float, int]]:
    """pid -> (command line, cpu seconds, start time ticks) for every process."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            s = (d / "stat").read_text()
            rest = s[s.rfind(")") + 2:].split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            comm = s[s.find("(") + 1:s.rfind(")")]
            out[int(d.name)] = (cmd[:160] or comm, (int(rest[11]) + int(rest[12])) / CLK_TCK, int(rest[19]))
        except (OSError, IndexError, ValueError):
            continue
    return out


class Sampler(threading.Thread):
    def __init__(self, pids: dict[str, int], interval: float = 1.0):
        super().__init__(daemon=True, name="sampler")
        self.pids, self.interval = pids, interval
        self.samples: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    def sample(self) -> dict[str, Any]:
        busy, total = system_cpu()
        s: dict[str, Any] = {"t": time.time(), "load1": float(Path("/proc/loadavg").read_text().split()[0]),
                             "sys_busy": busy, "sys_total": total, "cpu": {}, "mem": {}}
        for name, pid in list(self.pids.items()):
            c = proc_cpu(pid)
            if c is not None:
                s["cpu"][name] = c
        s["mem"] = proc_status(self.pids["operator"]) if "operator" in self.pids else {}
        s["sched"] = {name: schedstat(pid) for name, pid in self.pids.items()}
        return s

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append(self.sample())
            self.stopping.wait(self.interval)


# --------------------------------------------------------------------------------------------------
# The audit log
# --------------------------------------------------------------------------------------------------


def read_audit(path: Path) -> list[dict[str, Any]]:
    """One entry per request (deduplicated by auditID; long-running requests log two stages)."""
    by_id: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            ref = ev.get("objectRef") or {}
            rec = {
                "user": (ev.get("user") or {}).get("username", ""),
                "verb": ev.get("verb", ""),
                "resource": (ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else ""))
                or "(discovery " + ev.get("requestURI", "").split("?")[0] + ")",
                "name": ref.get("name", ""),
                "namespace": ref.get("namespace", ""),
                "code": (ev.get("responseStatus") or {}).get("code"),
                "t": parse_time(ev.get("stageTimestamp")),
                "t0": parse_time(ev.get("requestReceivedTimestamp")),
                "stage": ev.get("stage"),
            }
            old = by_id.get(ev.get("auditID", ""))
            if old is None or rec["stage"] == "ResponseComplete":
                by_id[ev.get("auditID", "")] = rec
    return list(by_id.values())


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------


def sweep_manifest(args: argparse.Namespace, pool: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubesweep.io/v1alpha1", "kind": "Sweep", "metadata": {"name": SWEEP},
        "spec": {
            "method": "random",
            "metric": {"name": METRIC, "goal": "minimize"},
            "program": "train.py",
            "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1.0},
                           "epochs": {"value": args.epochs}},
            "early_terminate": {"type": "hyperband", "max_iter": args.max_iter, "s": args.s, "eta": args.eta},
            "run_cap": args.runs,
            "parallelism": args.parallelism,
            "stop_grace_period_seconds": 5,
            "max_failed_runs": max(10, args.runs // 10),
            "template": {"spec": {
                "containers": [{"name": "train", "image": "registry.local/train:1",
                                "resources": {"limits": {"nvidia.com/gpu": 1}}}],
                "nodeSelector": {POOL_LABEL: pool, "nvidia.com/gpu.present": "true"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            }},
        },
    }


def kubectl(kubeconfig: Path, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    exe = os.environ.get("KUBECTL") or shutil.which("kubectl") or "/usr/bin/kubectl"
    proc = subprocess.run([exe, "--kubeconfig", str(kubeconfig), *args], input=input, capture_output=True,
                          text=True, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Interrupted(Exception):
    pass


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="kubesweep-opscale-"))
    log(f"workdir {workdir}")
    ns = "scale"
    pool = f"scale-{uuid.uuid4().hex[:6]}"
    audit_log = workdir / "audit.log"
    (workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)
    cp = ControlPlane(workdir / "cp", build_binaries(), extra_args={"kube-apiserver": [
        f"--audit-policy-file={workdir / 'audit-policy.yaml'}", f"--audit-log-path={audit_log}",
        "--audit-log-maxsize=0", "--audit-log-mode=blocking"]})
    sim: RecordingSim | None = None
    op_proc: subprocess.Popen | None = None
    spy: subprocess.Popen | None = None
    watchers: list[Watcher] = []
    sampler: Sampler | None = None
    tail: RecordTail | None = None
    seen = Observed()
    record_dir = workdir / "record"
    record_dir.mkdir()
    op_log = workdir / "operator.log"
    result: dict[str, Any] = {}
    t: dict[str, float] = {}
    polls: list[dict[str, Any]] = []
    dumps: list[str] = []
    procs_before: dict[int, tuple[str, float, int]] = {}
    procs_after: dict[int, tuple[str, float, int]] = {}
    final: dict[str, Any] = {}

    def on_signal(signum: int, frame: Any) -> None:
        raise Interrupted(f"signal {signum}")

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        t["cp_start"] = time.time()
        cp.start()
        t["cp_ready"] = time.time()
        log(f"control plane up in {t['cp_ready'] - t['cp_start']:.1f} s ({cp.server})")
        kubectl(cp.kubeconfig, "apply", "--server-side", "-f", str(ROOT / "crds"))
        for attempt in range(20):  # right after the apply, a CRD may have no conditions yet: kubectl wait errors
            done = kubectl(cp.kubeconfig, "wait", "--for=condition=Established", "crd/sweeps.kubesweep.io",
                           "crd/sweepruns.kubesweep.io", "--timeout=30s", check=attempt == 19)
            if done.returncode == 0:
                break
            time.sleep(0.5)
        kubectl(cp.kubeconfig, "create", "namespace", ns)
        kubectl(cp.kubeconfig, "create", "serviceaccount", "default", "-n", ns, check=False)
        nodes = gpu_nodes(args.nodes, gpus=args.gpus_per_node, prefix=f"{pool}-gpu-", labels={POOL_LABEL: pool})
        sim = RecordingSim.for_control_plane(cp, nodes, epoch_seconds=args.epoch_seconds)
        sim.start()
        log(f"{args.nodes} simulated nodes x {args.gpus_per_node} GPUs ready, epoch {args.epoch_seconds} s")
        api = Api(cp)
        watchers = [Watcher(api, f"/apis/batch/v1/namespaces/{ns}/jobs", seen.on_job, "watch-jobs"),
                    Watcher(api, f"/api/v1/namespaces/{ns}/pods", seen.on_pod, "watch-pods")]
        for w in watchers:
            w.start()
        for w in watchers:
            if not w.synced.wait(30):
                raise RuntimeError(f"{w.name} did not sync")

        # The operator, under its own identity.
        cert, key = cp.issue_client_cert("kubesweep-operator", OPERATOR_USER, ["system:masters"])
        op_kubeconfig = cp.write_kubeconfig(workdir / "operator.kubeconfig", cert, key)
        metrics_port, push_port = free_port(), free_port()
        env = {**os.environ, "KUBECONFIG": str(op_kubeconfig), "PYTHONUNBUFFERED": "1"}
        with open(op_log, "ab") as lf:
            launcher = [str(args.operator_launcher)] if args.operator_launcher else ["-m", "kubesweep.cli"]
            op_proc = subprocess.Popen(
                [sys.executable, *launcher, "operator", "--namespace", ns, "--metrics-port",
                 str(metrics_port), "--push-port", str(push_port), "--record-dir", str(record_dir)],
                env=env, stdout=lf, stderr=subprocess.STDOUT, cwd=ROOT)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        deadline = time.monotonic() + 60
        while True:
            if op_proc.poll() is not None:
                raise RuntimeError(f"operator exited {op_proc.returncode}: {op_log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(metrics_url, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("operator did not come up")
                time.sleep(0.2)
        t["operator_up"] = time.time()
        log(f"operator pid {op_proc.pid} up")
        pids = {"operator": op_proc.pid, "bench+sim": os.getpid()}
        for p in cp._procs:  # noqa: SLF001 - read-only: the component pids
            pids[p.name] = p.popen.pid
        sampler = Sampler(pids)
        sampler.start()
        tail = RecordTail(record_dir / f"{ns}_{SWEEP}.jsonl")
        tail.start()
        if args.profile:
            spy_out = workdir / "profile.txt"
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(op_proc.pid),
                                    "--rate", str(args.profile_rate), "--nonblocking", "--gil", "--format", "raw",
                                    "--threads", "-o", str(spy_out)],
                                   stdout=subprocess.DEVNULL, stderr=open(workdir / "py-spy.log", "wb"))

        procs_before = all_processes()
        op_cpu0 = proc_cpu(op_proc.pid)
        t["apply"] = time.time()
        kubectl(cp.kubeconfig, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump(sweep_manifest(args, pool)))
        log(f"sweep applied: {args.runs} runs, parallelism {args.parallelism}")
        deadline = time.monotonic() + args.timeout
        last_print = 0.0
        phase = None
        dump_at = sorted(args.dump_at) if args.profile else []
        while True:
            if op_proc.poll() is not None:
                raise RuntimeError(f"operator exited {op_proc.returncode}")
            try:
                sw = api.get(f"/apis/kubesweep.io/v1alpha1/namespaces/{ns}/sweeps/{SWEEP}", timeout=20)
            except Exception as exc:  # noqa: BLE001 - a slow API server must not end the benchmark
                log(f"poll failed: {exc}")
                time.sleep(1)
                continue
            st = sw.get("status") or {}
            phase = st.get("phase")
            runs = st.get("runs") or {}
            now = time.time()
            with seen.lock:
                pods_running = sum(1 for p in seen.pods.values()
                                   if p.get("running") and not p.get("terminal") and not p.get("deleted"))
                jobs_created = sum(1 for j in seen.jobs.values() if not j.get("synced"))
            polls.append({"t": now, "phase": phase, "watch_jobs_created": jobs_created, "watch_pods_running": pods_running,
                          **{f"status_{k}": runs.get(k) for k in ("total", "running", "earlyStopped", "succeeded")}})
            if dump_at and (runs.get("total") or 0) >= dump_at[0] * args.runs:
                dump_at.pop(0)
                out = subprocess.run([str(Path(sys.executable).parent / "py-spy"), "dump", "--pid", str(op_proc.pid),
                                      "--nonblocking"], capture_output=True, text=True, timeout=60)
                dumps.append(out.stdout)
            if now - last_print > 15:
                last_print = now
                cpu = proc_cpu(op_proc.pid) or 0
                log(f"t={now - t['apply']:6.0f}s phase={phase} jobs={jobs_created} pods_running={pods_running} "
                    f"status.runs={runs} load1="
                    f"{Path('/proc/loadavg').read_text().split()[0]} operator_cpu={cpu - (op_cpu0 or 0):.0f}s "
                    f"rss={proc_status(op_proc.pid).get('VmRSS', 0) / 1024:.0f}MiB")
            if phase in ("Succeeded", "Failed"):
                t["done"] = now
                break
            if time.monotonic() > deadline:
                t["timeout"] = now
                log(f"TIMEOUT after {args.timeout:.0f} s")
                break
            time.sleep(args.poll)
        result["phase"] = phase
        # Let the last stopped pods disappear (their DELETED events), then collect.
        settle = time.monotonic() + 30
        while time.monotonic() < settle:
            with seen.lock:
                stopping = [p for p in seen.pods.values() if p.get("phase") == "Failed" and "deleted" not in p]
            if not stopping:
                break
            time.sleep(0.5)
        t["collected"] = time.time()
        procs_after = all_processes()
        final["operator_cpu_end"] = proc_cpu(op_proc.pid)
        final["operator_cpu_start"] = op_cpu0
        final["operator_status"] = proc_status(op_proc.pid)
        try:
            final["metrics"] = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
        except OSError as exc:
            final["metrics"] = ""
            log(f"metrics scrape failed: {exc}")
        final["sweep"] = api.get(f"/apis/kubesweep.io/v1alpha1/namespaces/{ns}/sweeps/{SWEEP}")
        final["sweepruns"] = api.get(f"/apis/kubesweep.io/v1alpha1/namespaces/{ns}/sweepruns")["items"]
        sim.capture_all()
        final["sim_stats"] = sim.stats()
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
        if sampler is not None:
            sampler.stopping.set()
            sampler.join(5)
        if tail is not None:
            time.sleep(0.1)
            tail.stopping.set()
            tail.join(5)
        if op_proc is not None and op_proc.poll() is None:
            op_proc.terminate()
            try:
                op_proc.wait(20)
            except subprocess.TimeoutExpired:
                op_proc.kill()
                op_proc.wait(5)
        for w in watchers:
            w.stop()
        if sim is not None:
            try:
                sim.stop()
            except Exception as exc:  # noqa: BLE001
                log(f"stopping the simulator: {exc}")
        cp.stop()
        log("torn down (operator, simulator, control plane)")

    try:
        if not final:
            raise RuntimeError("the benchmark did not get as far as collecting results")
        result.update(analyse(args, t, seen, sim, tail, sampler, record_dir / f"{ns}_{SWEEP}.jsonl",
                              read_audit(audit_log), final, polls, procs_before, procs_after, pids, op_log))
        result["watch"] = {w.name: {"events": w.events, "relists": w.relists, "errors": w.errors[:5]} for w in watchers}
        if args.profile:
            result["profile"] = summarize_profile(workdir / "profile.txt", args.profile_rate)
            result["profile"]["dumps"] = [summarize_dump(d) for d in dumps]
        return result
    finally:
        if args.keep_workdir:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------------


def analyse(args: argparse.Namespace, t: dict[str, float], seen: Observed, sim: RecordingSim | None,
            tail: RecordTail | None, sampler: Sampler | None, record_path: Path, audit: list[dict[str, Any]],
            final: dict[str, Any], polls: list[dict[str, Any]], procs_before: dict, procs_after: dict,
            pids: dict[str, int], op_log: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    capacity = min(args.parallelism, args.nodes * args.gpus_per_node)
    t_apply = t["apply"]
    t_end = t.get("done") or t.get("timeout") or time.time()
    wall = t_end - t_apply

    # -- write times of every metric line, by run and epoch (first pod of each run) -----------------
    written: dict[str, dict[int, float]] = {}
    pod_of_run: dict[str, str] = {}
    for (ns_, pod), (run, lines) in (sim.captured.items() if sim else []):
        if run in written:
            continue
        pod_of_run[run] = pod
        w = written[run] = {}
        for ns_time, text in lines:
            if text.startswith("epoch="):
                try:
                    w[int(text.split()[0].split("=")[1])] = ns_time / 1e9
                except (ValueError, IndexError):
                    pass
    for pod, p in seen.pods.items():
        pod_of_run.setdefault(p["run"], pod)

    # -- the record file, replayed through the engine: which row triggered each stop ---------------
    events = [json.loads(line) for line in record_path.read_text().splitlines() if line.strip()] \
        if record_path.exists() else []
    cfg = sweep_config.load(final["sweep"]).config
    tracker = SweepTracker(cfg)
    trigger: dict[str, tuple[str, int, int]] = {}
    iterations = 0
    for i, ev in enumerate(events):
        ev = dict(ev)
        run = ev.pop("run")
        if set(ev) == {"state"}:
            tracker.end(run, SUCCEEDED if ev["state"] == "finished" else FAILED)
            continue
        if metric_value(ev, METRIC) is not None:
            iterations += 1
        for d in tracker.row(run, ev):
            trigger[d.run] = (run, ev.get("epoch"), i)
    runs = {r["metadata"]["name"]: r for r in final["sweepruns"]}
    states = collections.Counter((r.get("status") or {}).get("state") for r in runs.values())
    stored = {n: (r["status"]["decision"]["band"], r["status"]["decision"].get("iteration"))
              for n, r in runs.items() if (r.get("status") or {}).get("state") == "EarlyStopped"}
    replayed = {n: (s.stop.band, s.stop.iteration) for n, s in tracker.runs.items() if s.stop is not None}
    out["decisions_match_replay"] = stored == replayed
    out["decision_mismatches"] = [
        {"run": n, "sweeprun_state": (runs.get(n, {}).get("status") or {}).get("state"), "stored": stored.get(n),
         "replayed": replayed.get(n)} for n in sorted(set(stored) | set(replayed)) if stored.get(n) != replayed.get(n)][:20]
    out["runs"] = {"created": len(runs), **{k or "none": v for k, v in states.items()}}
    stop_bands = collections.Counter(d[0] for d in stored.values())
    out["stops_by_band"] = {str(k): v for k, v in sorted(stop_bands.items())}
    out["stopped_by_other_runs_row"] = sum(1 for r, (tr, _, _) in trigger.items() if tr != r)

    # -- audit: operator requests ----------------------------------------------------------------
    op_req = [a for a in audit if a["user"] == OPERATOR_USER]
    suspend_at: dict[str, float] = {}
    job_create_audit: dict[str, float] = {}
    for a in sorted(op_req, key=lambda a: a["t"] or 0):
        if a["resource"] == "jobs" and a["verb"] == "patch" and a["name"] not in suspend_at:
            suspend_at[a["name"]] = a["t"]
        if a["resource"] == "jobs" and a["verb"] == "create" and a["code"] == 201:
            job_create_audit[a["name"]] = a["t"]
    jc_delete: dict[str, float] = {}
    for a in audit:
        if a["user"] == JOB_CONTROLLER and a["resource"] == "pods" and a["verb"] == "delete":
            jc_delete.setdefault(a["name"], a["t"])

    # -- decision latency, per stopped run -----------------------------------------------------------
    seg = collections.defaultdict(list)
    missing = collections.Counter()
    for run, (trun, epoch, _) in trigger.items():
        tw = written.get(trun, {}).get(epoch)
        tr = tail.recv.get((trun, epoch)) if tail else None
        ts = suspend_at.get(run)
        tsw = seen.jobs.get(run, {}).get("suspend")
        pod = seen.pods.get(pod_of_run.get(run, ""), {})
        tdel = jc_delete.get(pod_of_run.get(run, "")) or pod.get("deletion")
        tgone = pod.get("deleted")
        tterm = pod.get("terminal")
        if tw is None:
            missing["write"] += 1
        if ts is None:
            missing["suspend"] += 1
        if tgone is None:
            missing["pod_gone"] += 1

        def d(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else b - a

        seg["write_to_row_handled"].append(d(tw, tr))
        seg["row_handled_to_suspend"].append(d(tr, ts))
        seg["write_to_suspend"].append(d(tw, ts))
        seg["write_to_suspend_watch"].append(d(tw, tsw))
        seg["suspend_to_pod_deletion"].append(d(ts, tdel))
        seg["pod_deletion_to_pod_gone"].append(d(tdel, tgone))
        seg["suspend_to_pod_gone"].append(d(ts, tgone))
        seg["write_to_pod_gone"].append(d(tw, tgone))
        seg["write_to_pod_terminal"].append(d(tw, tterm))
    out["decision_latency"] = {k: dist(v) for k, v in seg.items()}
    out["decision_latency"]["missing"] = dict(missing)
    # every row, not only the deciding ones: write -> handled by the operator's loop
    all_rows = [tail.recv[k] - written[k[0]][k[1]] for k in (tail.recv if tail else {})
                if k[0] in written and k[1] in written[k[0]]]
    out["row_delivery_all_rows"] = dist(all_rows)
    hist = parse_histogram(final.get("metrics", ""), "kubesweep_decision_latency_seconds")
    out["operator_histogram"] = hist

    # -- backfill ----------------------------------------------------------------------------------
    pods = list(seen.pods.values())
    first_pod = {}
    for name, p in sorted(seen.pods.items(), key=lambda kv: kv[1]["added"]):
        first_pod.setdefault(p["run"], p)
    releases = sorted(min(x for x in (p.get("terminal"), p.get("deleted")) if x is not None)
                      for p in pods if p.get("terminal") or p.get("deleted"))
    op_releases = []
    for run, p in first_pod.items():
        if run in suspend_at:
            op_releases.append(suspend_at[run])
        elif p.get("terminal") or p.get("deleted"):
            op_releases.append(min(x for x in (p.get("terminal"), p.get("deleted")) if x is not None))
    op_releases.sort()
    creates_watch = sorted(j["added"] for j in seen.jobs.values() if not j.get("synced"))
    creates_audit = sorted(job_create_audit.values())
    running = sorted(p["running"] for p in pods if p.get("running"))
    bound = sorted(p["bound"] for p in pods if p.get("bound"))

    def matched(later: list[float], earlier: list[float]) -> list[float]:
        return [later[capacity + k] - earlier[k] for k in range(min(len(earlier), len(later) - capacity))]

    bf = {
        "capacity": capacity,
        "pod_end_to_next_job_created": dist(matched(creates_watch, releases)),
        "pod_end_to_next_job_created_audit": dist(matched(creates_audit, releases)),
        "slot_freed_in_operator_to_next_job_created": dist(matched(creates_audit, op_releases)),
        "pod_end_to_next_pod_bound": dist(matched(bound, releases)),
        "pod_end_to_next_pod_running": dist(matched(running, releases)),
    }
    # reaction: after a pod ended, when did the operator create its next Job (for any run)?
    import bisect

    reaction = []
    for r in releases:
        i = bisect.bisect_left(creates_watch, r)
        if i < len(creates_watch):
            reaction.append(creates_watch[i] - r)
    bf["pod_end_to_operators_next_job_create"] = dist(reaction)
    bf["job_create_rate_per_s"] = _r(len(creates_watch) / (creates_watch[-1] - creates_watch[0]), 2) \
        if len(creates_watch) > 1 else None
    g = matched(creates_watch, releases)
    bf["pod_end_to_next_job_created"]["share_negative"] = _r(sum(1 for x in g if x < 0) / len(g)) if g else None
    bf["pod_end_to_next_job_created_clipped"] = dist([max(x, 0.0) for x in g])
    # pod pipeline for every run: Job created -> pod created -> bound -> Running
    pipe = collections.defaultdict(list)
    for run, p in first_pod.items():
        tj = job_create_audit.get(run) or seen.jobs.get(run, {}).get("added")
        pipe["job_created_to_pod_created"].append(None if tj is None else p["added"] - tj)
        pipe["pod_created_to_bound"].append(p["bound"] - p["added"] if p.get("bound") else None)
        pipe["bound_to_running"].append(p["running"] - p["bound"] if p.get("running") and p.get("bound") else None)
    bf["pipeline"] = {k: dist(v) for k, v in pipe.items()}
    out["backfill"] = bf

    # -- GPU idle ----------------------------------------------------------------------------------
    intervals = []
    for p in pods:
        if p.get("running"):
            end = min([x for x in (p.get("terminal"), p.get("deleted")) if x is not None] or [t_end])
            intervals.append((p["running"], end))
    last_start = max((s for s, _ in intervals), default=t_end)
    first_job = min(creates_audit or creates_watch or [t_apply])
    out["gpu"] = {
        "idle_share_while_runs_remain": _r(idle_share(intervals, capacity, t_apply, last_start), 4),
        "idle_share_first_job_to_last_start": _r(idle_share(intervals, capacity, first_job, last_start), 4),
        "idle_share_whole_sweep": _r(idle_share(intervals, capacity, t_apply, t_end), 4),
        "window_while_runs_remain_s": _r(last_start - t_apply, 2),
        "tail_s": _r(t_end - last_start, 2),
        "busy_gpu_seconds": _r(sum(e - s for s, e in intervals), 1),
    }
    waste = 0.0
    for run, (trun, epoch, _) in trigger.items():
        tw = written.get(trun, {}).get(epoch)
        p = first_pod.get(run, {})
        ends = [x for x in (p.get("terminal"), p.get("deleted")) if x is not None]
        end = min(ends) if ends else None
        if tw is not None and end is not None:
            waste += max(end - tw, 0.0)
    out["gpu"]["gpu_seconds_after_stop_decision"] = _r(waste, 1)
    out["gpu"]["share_after_stop_decision"] = _r(waste / out["gpu"]["busy_gpu_seconds"], 4) \
        if out["gpu"]["busy_gpu_seconds"] else None

    # -- wall time against the ideal ------------------------------------------------------------
    status = final["sweep"].get("status") or {}
    ideal = iterations * args.epoch_seconds / capacity
    out["wall"] = {
        "wall_s": _r(wall, 1),
        "iterations_trained": iterations,
        "iterations_counted_by_engine": status.get("iterationsTrained"),
        "ideal_s": _r(ideal, 1),
        "wall_over_ideal": _r(wall / ideal, 2) if ideal else None,
        "gpu_seconds_lost_per_run": _r((wall * capacity - iterations * args.epoch_seconds) / max(len(runs), 1), 2),
        "mean_iterations_per_run": _r(iterations / max(len(runs), 1), 2),
        "control_plane_start_s": _r(t["cp_ready"] - t["cp_start"], 1),
    }

    # -- API requests by the operator --------------------------------------------------------------
    n_runs = max(len(runs), 1)
    by = collections.Counter((a["verb"], a["resource"]) for a in op_req)
    out["api"] = {
        "operator_requests": {f"{v} {r}": c for (v, r), c in sorted(by.items())},
        "operator_requests_per_run": {f"{v} {r}": _r(c / n_runs, 3) for (v, r), c in sorted(by.items())},
        "operator_writes_per_run": _r(sum(c for (v, _), c in by.items() if v in WRITE_VERBS) / n_runs, 3),
        "operator_reads_per_run": _r(sum(c for (v, _), c in by.items() if v not in WRITE_VERBS) / n_runs, 3),
        "operator_writes_by_verb_per_run": {v: _r(sum(c for (vv, _), c in by.items() if vv == v) / n_runs, 3)
                                            for v in WRITE_VERBS if any(vv == v for (vv, _) in by)},
        "operator_error_responses": collections.Counter(str(a["code"]) for a in op_req
                                                        if a["code"] and a["code"] >= 400),
        "sweeprun_status_patches_per_iteration": _r(by.get(("patch", "sweepruns/status"), 0) / iterations, 3)
        if iterations else None,
    }
    others = collections.Counter(a["user"] for a in audit if a["user"] != OPERATOR_USER and a["verb"] in WRITE_VERBS)
    out["api"]["writes_per_run_by_other_users"] = {u: _r(c / n_runs, 2) for u, c in others.most_common(8)}
    lat = [a["t"] - a["t0"] for a in op_req if a["verb"] in WRITE_VERBS and a["t"] and a["t0"]]
    out["api"]["operator_write_server_latency_s"] = dist(lat)
    # writes over time: the operator's peak write rate (per second)
    per_sec = collections.Counter(int(a["t"]) for a in op_req if a["verb"] in WRITE_VERBS and a["t"])
    out["api"]["operator_writes_per_second"] = {"p50": pct(list(per_sec.values()), 50),
                                                "max": max(per_sec.values(), default=0),
                                                "mean_over_sweep": _r(sum(per_sec.values()) / wall, 1)}

    # -- CPU and memory --------------------------------------------------------------------------
    samples = sampler.samples if sampler else []
    during = [s for s in samples if t_apply <= s["t"] <= t_end]
    cpu = {}
    if len(during) >= 2:
        a, b = during[0], during[-1]
        span = b["t"] - a["t"]
        for name in b["cpu"]:
            if name in a["cpu"]:
                cpu[name] = {"cpu_s": _r(b["cpu"][name] - a["cpu"][name], 1),
                             "cores": _r((b["cpu"][name] - a["cpu"][name]) / span, 3)}
        sys_busy = b["sys_busy"] - a["sys_busy"]
        ours = sum(v["cpu_s"] for v in cpu.values())
        cpu["machine"] = {"cpu_s": _r(sys_busy, 1), "cores": _r(sys_busy / span, 3),
                          "utilisation": _r(sys_busy / (b["sys_total"] - a["sys_total"]), 3)}
        cpu["not_ours"] = {"cpu_s": _r(sys_busy - ours, 1), "cores": _r((sys_busy - ours) / span, 3)}
        # operator CPU per 10 s window, to find its peak
        op = [(s["t"], s["cpu"].get("operator")) for s in during if s["cpu"].get("operator") is not None]
        peaks = []
        for i in range(len(op)):
            j = i
            while j < len(op) and op[j][0] - op[i][0] < 10:
                j += 1
            if j < len(op):
                peaks.append((op[j][1] - op[i][1]) / (op[j][0] - op[i][0]))
        cpu["operator"]["peak_cores_10s"] = _r(max(peaks, default=0), 3)
        # main threads: time on a CPU vs runnable but waiting for one (CPU starvation on a shared machine)
        for name in b.get("sched", {}):
            sa, sb = a.get("sched", {}).get(name), b["sched"].get(name)
            if sa and sb and name in cpu:
                cpu[name]["main_thread_on_cpu_share"] = _r((sb[0] - sa[0]) / span, 3)
                cpu[name]["main_thread_waiting_for_cpu_share"] = _r((sb[1] - sa[1]) / span, 3)
    op_status = final.get("operator_status") or {}
    rss = [s["mem"].get("VmRSS", 0) for s in samples if s.get("mem")]
    threads = [s["mem"].get("Threads", 0) for s in samples if s.get("mem")]
    out["operator"] = {
        "cpu_s_during_sweep": _r((final.get("operator_cpu_end") or 0) - (final.get("operator_cpu_start") or 0), 1),
        "cpu_s_total": _r(final.get("operator_cpu_end"), 1),
        "cpu_ms_per_run": _r(((final.get("operator_cpu_end") or 0) - (final.get("operator_cpu_start") or 0))
                             * 1000 / n_runs, 1),
        "peak_rss_mib": _r(op_status.get("VmHWM", 0) / 1024, 1),
        "rss_at_end_mib": _r(op_status.get("VmRSS", 0) / 1024, 1),
        "rss_p50_mib": _r((pct(rss, 50) or 0) / 1024, 1),
        "threads_max": max(threads, default=None),
        "log_levels": log_levels(op_log),
    }
    out["cpu"] = cpu
    loads = [s["load1"] for s in during]
    out["load"] = {"load1_p50": pct(loads, 50), "load1_max": max(loads, default=None),
                   "loadavg_start": samples[0]["load1"] if samples else None}
    out["other_processes"] = other_processes(procs_before, procs_after, set(pids.values()))
    out["sim"] = final.get("sim_stats")
    out["timeline"] = [{"t": _r(p["t"] - t_apply, 1), **{k: v for k, v in p.items() if k != "t"}}
                       for i, p in enumerate(polls) if i % max(1, len(polls) // 60) == 0 or i == len(polls) - 1]
    return out


def idle_share(intervals: list[tuple[float, float]], capacity: int, a: float, b: float) -> float | None:
    """Integral of max(capacity - busy(t), 0) over [a, b], divided by capacity * (b - a)."""
    if b <= a:
        return None
    ev = []
    for s, e in intervals:
        s, e = max(s, a), min(e, b)
        if e > s:
            ev += [(s, 1), (e, -1)]
    ev.sort()
    busy, last, idle = 0, a, 0.0
    for x, dlt in ev:
        idle += max(capacity - busy, 0) * (x - last)
        busy += dlt
        last = x
    idle += max(capacity - busy, 0) * (b - last)
    return idle / (capacity * (b - a))


def parse_histogram(text: str, name: str) -> dict[str, Any]:
    buckets, count, total = [], None, None
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((math.inf if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(name + "_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_sum"):
            total = float(line.rsplit(" ", 1)[1])
    buckets.sort()
    return {"count": count, "mean": _r(total / count) if count else None,
            "p50": _r(hist_quantile(buckets, 0.5)), "p99": _r(hist_quantile(buckets, 0.99)),
            "buckets": {("+Inf" if math.isinf(le) else str(le)): c for le, c in buckets}}


def log_levels(path: Path) -> dict[str, Any]:
    counts: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[2] in ("INFO", "WARNING", "ERROR", "CRITICAL", "DEBUG"):
                counts[parts[2]] += 1
                if parts[2] != "INFO":
                    key = parts[3][:80] if len(parts) > 3 else ""
                    examples.setdefault(key, line[:300])
    return {"counts": dict(counts), "examples": list(examples.values())[:8]}


def other_processes(before: dict, after: dict, ours: set[int]) -> list[dict[str, Any]]:
    """CPU used during the sweep by processes that are not the benchmark's (top 8)."""
    own = set(ours)
    # our descendants too (kubectl, py-spy)
    me = os.getpid()
    out = []
    for pid, (cmd, cpu, start) in after.items():
        if pid in own or pid == me:
            continue
        b = before.get(pid)
        base = b[1] if b and b[2] == start else 0.0
        d = cpu - base
        if d > 0.5:
            out.append({"pid": pid, "cpu_s": round(d, 1), "cmd": cmd[:120]})
    out.sort(key=lambda x: -x["cpu_s"])
    return out[:8]


def thread_kind(name: str) -> str:
    if name.startswith("log-"):
        return "log followers (log-<pod>)"
    if name.startswith("ThreadPoolExecutor"):
        return "executor threads (API calls)"
    if name == "MainThread":
        return "MainThread (kopf event loop)"
    return name


def summarize_profile(path: Path, rate: int) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks, --gil: who holds the GIL, by thread kind and function."""
    if not path.exists():
        return {"error": "no profile written"}
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    by_kind_top: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        try:
            c = int(n)
        except ValueError:
            continue
        frames = stack.split(";")
        total += c
        head = frames[0]
        name = head.split(": ", 1)[1] if head.startswith("thread (") and ": " in head else head
        kind = thread_kind(name)
        threads[kind] += c
        fr = [f.strip() for f in frames[1:]]
        if fr:
            self_c[fr[-1][:140]] += c
            # the first frame of our own code or of the libraries we call, below the thread's plumbing
            interesting = [f for f in fr if any(k in f for k in ("kubesweep/", "kopf/", "kubernetes/", "urllib3/",
                                                                 "prometheus_client/", "json/", "ssl.py"))]
            by_kind_top[kind][(interesting[0] if interesting else fr[-1])[:140]] += c
        for f in set(fr):
            incl[f[:140]] += c
    share = (lambda c: _r(c / total, 3)) if total else (lambda c: None)
    return {"samples": total, "rate_hz": rate, "seconds_sampled": _r(total / rate, 1), "mode": "--gil --nonblocking",
            "by_thread_kind": {k: [c, share(c)] for k, c in threads.most_common(12)},
            "entry_by_thread_kind": {k: [[f, c, share(c)] for f, c in v.most_common(6)] for k, v in by_kind_top.items()},
            "top_self": [[f, c, share(c)] for f, c in self_c.most_common(25)],
            "top_inclusive": [[f, c, share(c)] for f, c in incl.most_common(60)]}


def summarize_dump(text: str) -> dict[str, Any]:
    """py-spy dump -> thread count and the most common innermost frames."""
    tops: collections.Counter[str] = collections.Counter()
    n = 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Thread "):
            n += 1
            if i + 1 < len(lines) and lines[i + 1].startswith("    "):
                tops[lines[i + 1].strip()[:120]] += 1
    return {"threads": n, "top_frames": tops.most_common(8)}


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def markdown(res: dict[str, Any]) -> str:
    cfg = res["config"]
    dl, bf, g, w, api, op = res["decision_latency"], res["backfill"], res["gpu"], res["wall"], res["api"], res["operator"]
    lines = [
        f"**{cfg['runs']:,} runs, parallelism {cfg['parallelism']}, {cfg['nodes']} nodes × {cfg['gpus_per_node']} GPUs, "
        f"epoch {cfg['epoch_seconds']} s** — phase {res['phase']}, runs {res['runs']}, stops by band "
        f"{res['stops_by_band']}; load average 1 min p50 {fmt(res['load']['load1_p50'], 2)} (max "
        f"{fmt(res['load']['load1_max'], 2)}); other processes used {fmt(res['cpu'].get('not_ours', {}).get('cores'), 2)} "
        f"cores on average during the sweep.",
        "",
        "| segment (s) | n | p50 | p99 | max |",
        "|---|---:|---:|---:|---:|",
    ]
    names = [
        ("write_to_row_handled", "metric line written → row handled by the operator's loop"),
        ("row_handled_to_suspend", "row handled → Job suspend answered (audit)"),
        ("write_to_suspend", "**decision latency: line written → Job suspend answered**"),
        ("write_to_suspend_watch", "line written → `spec.suspend: true` seen on the Job watch"),
        ("suspend_to_pod_deletion", "suspend → pod deletion requested (Job controller)"),
        ("pod_deletion_to_pod_gone", "pod deletion requested → pod DELETED (SIGTERM, 0.2 s in the sim)"),
        ("write_to_pod_gone", "**end to end: line written → pod DELETED**"),
    ]
    for key, label in names:
        d = dl.get(key, {})
        lines.append(f"| {label} | {d.get('n', 0)} | {fmt(d.get('p50'))} | {fmt(d.get('p99'))} | {fmt(d.get('max'))} |")
    h = res["operator_histogram"]
    lines.append(f"| operator's own `kubesweep_decision_latency_seconds` (row received → suspend answered; "
                 f"from buckets, mean {fmt(h.get('mean'))}) | {fmt(int(h['count']) if h.get('count') else None)} | "
                 f"{fmt(h.get('p50'))} | {fmt(h.get('p99'))} | – |")
    d = res["row_delivery_all_rows"]
    lines.append(f"| every row (not only deciding ones): written → handled by the operator | {d.get('n', 0)} | "
                 f"{fmt(d.get('p50'))} | {fmt(d.get('p99'))} | {fmt(d.get('max'))} |")
    for key, label in [
        ("pod_end_to_next_job_created", "**backfill: pod ended/deleted → next Job created** (FIFO match, watch; "
                                        "negative = Job was created before)"),
        ("pod_end_to_next_job_created_clipped", "the same, clipped at 0 (time a freed slot waited for a Job)"),
        ("pod_end_to_operators_next_job_create", "pod ended → the operator's next Job create, any run (reaction)"),
        ("slot_freed_in_operator_to_next_job_created", "slot freed in the operator (stop answered / pod end) → next Job created (audit)"),
        ("pod_end_to_next_pod_bound", "pod ended → next pod bound (scheduler)"),
        ("pod_end_to_next_pod_running", "pod ended → next pod Running (GPU handover)"),
    ]:
        d = bf.get(key, {})
        lines.append(f"| {label} | {d.get('n', 0)} | {fmt(d.get('p50'))} | {fmt(d.get('p99'))} | {fmt(d.get('max'))} |")
    for key, d in bf["pipeline"].items():
        lines.append(f"| {key.replace('_', ' ')} | {d.get('n', 0)} | {fmt(d.get('p50'))} | {fmt(d.get('p99'))} | "
                     f"{fmt(d.get('max'))} |")
    lines += [
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| decision latency p99 (line written → suspend answered) | {fmt(dl['write_to_suspend'].get('p99'))} s | "
        f"< 1 s: {'met' if (dl['write_to_suspend'].get('p99') or 9) < 1 else '**missed**'} |",
        f"| backfill p99 (pod ended → next Job created) | {fmt(bf['pod_end_to_next_job_created'].get('p99'))} s | "
        + ("n/a: no backfill (runs ≤ capacity) |" if not bf['pod_end_to_next_job_created'].get('n') else
           f"< 2 s: {'met' if bf['pod_end_to_next_job_created']['p99'] < 2 else '**missed**'} |"),
        f"| GPU idle while runs remain (apply → last run started) | {fmt(100 * (g['idle_share_while_runs_remain'] or 0), 1)} % of "
        f"{cfg['parallelism']} GPUs × {fmt(g['window_while_runs_remain_s'], 0)} s | |",
        f"| GPU idle, first Job → last run started / whole sweep incl. {fmt(g['tail_s'], 0)} s tail | "
        f"{fmt(100 * (g['idle_share_first_job_to_last_start'] or 0), 1)} % / {fmt(100 * (g['idle_share_whole_sweep'] or 0), 1)} % | |",
        f"| GPU time spent after a stop was due (line written → pod ended) | {fmt(100 * (g['share_after_stop_decision'] or 0), 1)} % of busy GPU time | |",
        f"| wall time / ideal ({w['iterations_trained']:,} iterations × {cfg['epoch_seconds']} s / {bf['capacity']} GPUs "
        f"= {fmt(w['ideal_s'], 1)} s) | {fmt(w['wall_s'], 1)} s = {fmt(w['wall_over_ideal'], 2)}× "
        f"({fmt(w['gpu_seconds_lost_per_run'], 2)} GPU-s lost per run) | |",
        f"| operator CPU during the sweep | {fmt(op['cpu_s_during_sweep'], 1)} s = {fmt(op['cpu_ms_per_run'], 0)} ms/run; "
        f"{fmt(res['cpu'].get('operator', {}).get('cores'), 2)} cores mean, {fmt(res['cpu'].get('operator', {}).get('peak_cores_10s'), 2)} peak (10 s) | |",
        f"| operator peak RSS (VmHWM) | {fmt(op['peak_rss_mib'], 1)} MiB ({op['threads_max']} threads max) | "
        f"< 300 MB: {'met' if op['peak_rss_mib'] * 1.048576 < 300 else '**missed**'} |",
        f"| operator API writes per run | {fmt(api['operator_writes_per_run'], 2)} "
        f"({', '.join(f'{k} {fmt(v, 2)}' for k, v in api['operator_writes_by_verb_per_run'].items())}) | bounded, "
        f"independent of runs |",
        f"| operator API reads per run | {fmt(api['operator_reads_per_run'], 2)} | |",
        "",
        "| operator requests per run (audit log) | per run | total |",
        "|---|---:|---:|",
    ]
    for k, v in api["operator_requests_per_run"].items():
        lines.append(f"| {k} | {fmt(v, 3)} | {api['operator_requests'][k]:,} |")
    lines.append(f"| (SweepRun status patches per iteration trained) | {fmt(api['sweeprun_status_patches_per_iteration'], 3)} | |")
    lines += ["", "| CPU during the sweep | CPU s | cores | main thread on a CPU | main thread runnable, waiting for a CPU |",
              "|---|---:|---:|---:|---:|"]
    for k, v in res["cpu"].items():
        if isinstance(v, dict) and "cpu_s" in v:
            on, wait = v.get("main_thread_on_cpu_share"), v.get("main_thread_waiting_for_cpu_share")
            lines.append(f"| {k} | {fmt(v['cpu_s'], 1)} | {fmt(v['cores'], 3)} | "
                         f"{'–' if on is None else fmt(100 * on, 1) + ' %'} | {'–' if wait is None else fmt(100 * wait, 1) + ' %'} |")
    prof = res.get("profile")
    if prof and prof.get("samples"):
        lines += ["", f"py-spy `{prof['mode']}` at {prof['rate_hz']} Hz: {prof['samples']:,} samples with the GIL held "
                      f"({fmt(prof['seconds_sampled'], 1)} s).", "", "| GIL held by | share |", "|---|---:|"]
        for k, (c, sh) in prof["by_thread_kind"].items():
            lines.append(f"| {k} | {fmt(100 * sh, 1)} % |")
        lines += ["", "| function (inclusive, kubesweep / kopf / client frames) | share of GIL samples |", "|---|---:|"]
        for f, c, sh in [x for x in prof["top_inclusive"] if any(k in x[0] for k in ("kubesweep/", "kopf/", "kubernetes/",
                                                                                       "urllib3/", "pydantic", "logging"))][:20]:
            lines.append(f"| `{f}` | {fmt(100 * sh, 1)} % |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--parallelism", type=int, default=200)
    p.add_argument("--nodes", type=int, default=25)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--epoch-seconds", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max-iter", type=int, default=20)
    p.add_argument("--s", type=int, default=2)
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--timeout", type=float, default=2400, help="hard limit for the sweep, seconds (default 40 min)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between Sweep status polls")
    p.add_argument("--quick", action="store_true", help="smoke run: 60 runs, parallelism 20, 3 nodes")
    p.add_argument("--json", type=Path, help=f"merge the result into this file (default {DEFAULT_JSON.relative_to(ROOT)}; "
                                             "--quick: none)")
    p.add_argument("--label", help="key of this result in the JSON file (default runs<N>-p<P>)")
    p.add_argument("--profile", action="store_true", help="py-spy record the operator (perturbs the timings)")
    p.add_argument("--profile-rate", type=int, default=50)
    p.add_argument("--dump-at", type=float, nargs="*", default=[0.3, 0.6], help="with --profile: py-spy dump when "
                                                                                  "this share of runs was created")
    p.add_argument("--keep-workdir", action="store_true")
    p.add_argument("--operator-launcher", type=Path, help="run `python FILE operator ...` instead of "
                                                          "`python -m kubesweep.cli operator ...` (to try a candidate "
                                                          "change to the operator without editing it)")
    args = p.parse_args()
    if args.quick:
        args.runs, args.parallelism, args.nodes = 60, 20, 3
    label = args.label or (f"runs{args.runs}-p{args.parallelism}" + ("-profiled" if args.profile else "")
                           + ("-quick" if args.quick else ""))
    started = _dt.datetime.now(_dt.timezone.utc)
    res = run_benchmark(args)
    res = {
        "config": {k: getattr(args, k) for k in ("runs", "parallelism", "nodes", "gpus_per_node", "epoch_seconds",
                                                  "epochs", "max_iter", "s", "eta", "timeout", "profile")},
        "operator_launcher": str(args.operator_launcher) if args.operator_launcher else None,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                                 if line.startswith("model name")), None),
                    "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip(),
        **res,
    }
    print(markdown(res))
    path = args.json or (None if args.quick else DEFAULT_JSON)
    if path is not None:
        data = json.loads(path.read_text()) if path.exists() else {}
        data.setdefault("results", {})[label] = res
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, default=str) + "\n")
        log(f"wrote {path} [{label}]")
    return 0 if res.get("phase") == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
