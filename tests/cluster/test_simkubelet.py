"""The simulated kubelet against the real control plane: nodes, scheduling, the
training-run simulation, failures, deletion and suspension, and pods/log
through the apiserver (the real kubectl)."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from kubesweep.devcluster.simkubelet import (
    GPU_RESOURCE,
    GPU_TAINT,
    SimKubelet,
    gpu_nodes,
    learning_curve,
    metric_value,
    parse_params,
    run_quality,
)

cluster = pytest.mark.cluster

POOL_LABEL = "kubesweep.dev/sim-pool"
EPOCH = 0.2  # seconds per simulated epoch in this module
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


# --------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(control_plane):
    """2 nodes x 8 GPUs, 0.2 s epochs, in a pool of their own (a unique node label)."""
    pool = f"st-{uuid.uuid4().hex[:6]}"
    # A taint of their own too: no other test's GPU pod lands on these 16 GPUs.
    taints = [dict(GPU_TAINT), {"key": POOL_LABEL, "value": pool, "effect": "NoSchedule"}]
    nodes = gpu_nodes(2, gpus=8, prefix=f"{pool}-gpu-", labels={POOL_LABEL: pool}, taints=taints)
    with SimKubelet.for_control_plane(control_plane, nodes, epoch_seconds=EPOCH) as s:
        s.pool = pool  # type: ignore[attr-defined]
        yield s


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _get(kubectl, *args) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def _pod_spec(sim, *, args=(), env=None, gpus=1, extra_containers=(), grace=None) -> dict:
    container = {
        "name": "train",
        "image": "registry.local/train:1",
        "command": ["python", "train.py"],
        "args": list(args),
        "env": [{"name": k, "value": str(v)} for k, v in (env or {}).items()],
        "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
    }
    spec = {
        "restartPolicy": "Never",
        "nodeSelector": {POOL_LABEL: sim.pool, "nvidia.com/gpu.present": "true"},
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"},
            {"key": POOL_LABEL, "operator": "Equal", "value": sim.pool, "effect": "NoSchedule"},
        ],
        "containers": [container, *extra_containers],
    }
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return spec


def _pod(sim, name, *, labels=None, finalizers=None, **kw) -> dict:
    meta = {"name": name, "namespace": "default", "labels": labels or {}}
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": _pod_spec(sim, **kw)}


def _job(sim, name, *, backoff_limit=0, **kw) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": _pod_spec(sim, **kw)}},
    }


def _create(kubectl, *objs: dict) -> None:
    doc = objs[0] if len(objs) == 1 else {"apiVersion": "v1", "kind": "List", "items": list(objs)}
    kubectl("create", "-f", "-", input=json.dumps(doc))


def _delete(kubectl, kind: str, *names: str) -> None:
    if names:
        kubectl("delete", kind, *names, "-n", "default", "--ignore-not-found", "--wait=false", check=False)


def _phase(kubectl, name: str) -> str:
    return _get(kubectl, "pod", name).get("status", {}).get("phase", "")


def _wait_phase(kubectl, wait, name: str, *phases: str, timeout: float = 30) -> dict:
    def check():
        pod = _get(kubectl, "pod", name)
        return pod if pod.get("status", {}).get("phase") in phases else None

    return wait(check, timeout=timeout, interval=0.1, what=f"pod {name} to be {'/'.join(phases)}")


def _job_condition(kubectl, name: str, ctype: str) -> dict | None:
    job = _get(kubectl, "job", name)
    for c in job.get("status", {}).get("conditions") or []:
        if c["type"] == ctype and c["status"] == "True":
            return c
    return None


def _job_pods(kubectl, job: str) -> list[dict]:
    return _get(kubectl, "pods", "-n", "default", "-l", f"job-name={job}")["items"]


def _terminated(pod: dict, container: str = "train") -> dict:
    cs = next(c for c in pod["status"]["containerStatuses"] if c["name"] == container)
    return cs["state"].get("terminated") or {}


def _expected_lines(args, epochs, metric="val_loss", goal="minimize") -> list[str]:
    return [f"epoch={e} {metric}={v:.6f}" for e, v in enumerate(learning_curve(args, epochs, goal), 1)]


class _Follow:
    """``kubectl logs -f`` in the background, recording each line's arrival time."""

    def __init__(self, control_plane, *args: str) -> None:
        self.lines: list[tuple[float, str]] = []
        exe = os.environ.get("KUBECTL") or ("/usr/bin/kubectl" if os.path.exists("/usr/bin/kubectl") else "kubectl")
        self.proc = subprocess.Popen(
            [exe, "--kubeconfig", str(control_plane.kubeconfig), "logs", "-f", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def text(self) -> list[str]:
        return [t for _, t in self.lines]

    def wait(self, timeout: float = 30) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._thread.join(5)
        return rc


# --------------------------------------------------------------------------
# The learning curve (no cluster)
# --------------------------------------------------------------------------


def test_params_and_learning_curve_are_deterministic():
    assert parse_params(["python", "train.py", "--lr=0.01", "batch_size=32", "--flag", "-v"]) == {
        "lr": "0.01",
        "batch_size": "32",
    }
    assert parse_params(["sh", "-c", "python train.py --lr=0.1 --epochs=5"]) == {"lr": "0.1", "epochs": "5"}

    curve = learning_curve({"lr": "0.01"}, 10)
    assert curve == learning_curve(["--lr=0.01"], 10)  # deterministic, argv or dict
    assert all(a > b for a, b in zip(curve, curve[1:]))  # a loss falls
    q = run_quality({"lr": "0.01"})
    assert 0.1 <= q < 0.15 and curve[0] == round(q + (2 - q) * 2.718281828459045 ** (-1 / 3), 6)

    # Best lr 1e-2; worse the further away in log space, at every epoch.
    far, near, best = (learning_curve({"lr": lr}, 20) for lr in ("1e-4", "1e-3", "1e-2"))
    assert all(f > n > b for f, n, b in zip(far, near, best))
    # "quality" pins the converged value; other params shift it only a little.
    assert learning_curve({"quality": "0.3"}, 60)[-1] == pytest.approx(0.3, abs=1e-6)
    assert abs(run_quality({"lr": "0.01", "seed": "1"}) - run_quality({"lr": "0.01", "seed": "2"})) <= 0.05
    # maximize rises towards the quality
    up = learning_curve({"quality": "0.9"}, 30, "maximize")
    assert all(a < b for a, b in zip(up, up[1:])) and up[-1] == pytest.approx(0.9, abs=0.01)
    assert metric_value(0.9, 3, "maximize") == pytest.approx(0.9 * (1 - 2.718281828459045 ** -1))


# --------------------------------------------------------------------------
# Nodes and scheduling
# --------------------------------------------------------------------------


@cluster
def test_nodes_are_registered_ready_and_leased(sim, kubectl):
    assert len(sim.node_names) == 2
    for name in sim.node_names:
        node = _get(kubectl, "node", name)
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == name
        assert labels["nvidia.com/gpu.present"] == "true"
        assert labels["nvidia.com/gpu.product"] == "SIM-GPU"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
        status = node["status"]
        assert status["capacity"][GPU_RESOURCE] == status["allocatable"][GPU_RESOURCE] == "8"
        assert {"cpu", "memory", "pods"} <= set(status["allocatable"])
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
        assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == sim.port
        lease = _get(kubectl, "lease", name, "-n", "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == name
        assert lease["metadata"]["ownerReferences"][0]["name"] == name


@cluster
def test_gpu_pod_is_scheduled_and_runs(sim, kubectl, wait):
    name = _name("run")
    _create(kubectl, _pod(sim, name, args=["--lr=0.01", "--epochs=10"]))
    try:
        pod = _wait_phase(kubectl, wait, name, "Running")
        assert pod["spec"]["nodeName"] in sim.node_names  # bound by the real scheduler
        st = pod["status"]
        assert st["podIP"].startswith("127.") and st["hostIP"] == "127.0.0.1" and st["startTime"]
        conds = {c["type"]: c["status"] for c in st["conditions"]}
        assert conds["PodScheduled"] == conds["Ready"] == conds["ContainersReady"] == "True"
        (cs,) = st["containerStatuses"]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0
        assert cs["state"]["running"]["startedAt"] and cs["containerID"].startswith("containerd://")
    finally:
        _delete(kubectl, "pod", name)


@cluster
def test_pod_wanting_more_gpus_than_a_node_has_stays_pending(sim, kubectl, wait):
    name = _name("nine")
    _create(kubectl, _pod(sim, name, gpus=9))
    try:
        def unschedulable():
            pod = _get(kubectl, "pod", name)
            for c in pod.get("status", {}).get("conditions") or []:
                if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable":
                    return pod
            return None

        pod = wait(unschedulable, timeout=30, interval=0.2, what=f"{name} Unschedulable")
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
        assert GPU_RESOURCE in next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")["message"]
    finally:
        _delete(kubectl, "pod", name)


@cluster
def test_gpus_are_released_when_pods_end(sim, kubectl, wait):
    """17 one-GPU pods on 16 GPUs: one waits, and runs once another has finished."""
    tag = _name("fill")
    names = [f"{tag}-{i:02d}" for i in range(17)]
    _create(kubectl, *(_pod(sim, n, labels={"fill": tag}, args=["--epochs=20"]) for n in names))
    try:
        def pods():
            return {p["metadata"]["name"]: p for p in _get(kubectl, "pods", "-l", f"fill={tag}")["items"]}

        def sixteen_running_one_waiting():
            ps = pods()
            running = [p for p in ps.values() if p["status"].get("phase") == "Running"]
            waiting = [
                p for p in ps.values()
                if not p["spec"].get("nodeName")
                and any(c.get("reason") == "Unschedulable" for c in p["status"].get("conditions") or [])
            ]
            return (running, waiting) if len(running) == 16 and len(waiting) == 1 else None

        running, (late,) = wait(sixteen_running_one_waiting, timeout=30, interval=0.1, what="16 Running + 1 Unschedulable")
        per_node = {}
        for p in running:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
        assert per_node == {n: 8 for n in sim.node_names}
        late_name = late["metadata"]["name"]

        def all_succeeded():
            ps = pods()
            return ps if len(ps) == 17 and all(p["status"].get("phase") == "Succeeded" for p in ps.values()) else None

        final = wait(all_succeeded, timeout=40, interval=0.2, what="all 17 pods Succeeded")
        first_finish = min(_terminated(p)["finishedAt"] for n, p in final.items() if n != late_name)
        assert final[late_name]["status"]["startTime"] >= first_finish
    finally:
        _delete(kubectl, "pod", *names)


# --------------------------------------------------------------------------
# Logs through the apiserver
# --------------------------------------------------------------------------


@cluster
def test_kubectl_logs_follow_streams_epochs_until_done(sim, control_plane, kubectl, wait):
    name = _name("logs")
    args = ["--lr=0.003", "--epochs=10", "--batch_size=64"]
    _create(kubectl, _pod(sim, name, args=args))
    try:
        _wait_phase(kubectl, wait, name, "Running")
        follow = _Follow(control_plane, name, "-c", "train")
        assert follow.wait(30) == 0, follow.proc.stderr.read() if follow.proc.stderr else ""
        # The whole log from the start, then each line as it was written, up to "done".
        assert follow.text() == [*_expected_lines(args, 10), "done"]
        arrivals = [t for t, _ in follow.lines]
        assert arrivals[-1] - arrivals[0] >= 0.8, "lines were not streamed as they were written"

        pod = _wait_phase(kubectl, wait, name, "Succeeded")
        term = _terminated(pod)
        assert term["exitCode"] == 0 and term["reason"] == "Completed"

        # After the end the whole log is still there, with the kubelet's options.
        full = kubectl("logs", name).stdout.splitlines()
        assert full == [*_expected_lines(args, 10), "done"]
        assert kubectl("logs", name, "--tail=2").stdout.splitlines() == [full[-2], "done"]
        stamped = kubectl("logs", name, "--timestamps", "--tail=3").stdout.splitlines()
        assert len(stamped) == 3 and all(TS.match(s) for s in stamped)
        assert [s.split(" ", 1)[1] for s in stamped] == full[-3:]
        assert kubectl("logs", name, "--limit-bytes=12").stdout == full[0][:12]
        assert kubectl("logs", name, "--since=1h").stdout.splitlines() == full
        # A finished container's follow ends at once.
        assert kubectl("logs", "-f", name, "--tail=1", timeout=10).stdout == "done\n"
        prev = kubectl("logs", name, "--previous", check=False)
        assert prev.returncode != 0 and "previous terminated container" in prev.stderr
    finally:
        _delete(kubectl, "pod", name)


@cluster
def test_follow_from_the_start_gets_every_epoch(sim, control_plane, kubectl, wait):
    """A slow first epoch (SIM_START_SECONDS) to attach before any line: 400 while waiting."""
    name = _name("early")
    args = ["--lr=0.01", "--epochs=5"]
    _create(kubectl, _pod(sim, name, args=args, env={"SIM_START_SECONDS": "1.5", "SIM_EPOCH_SECONDS": "0.3"}))
    try:
        wait(lambda: _get(kubectl, "pod", name)["spec"].get("nodeName"), timeout=30, interval=0.1, what="bound")
        early = kubectl("logs", name, check=False)
        pod = _get(kubectl, "pod", name)
        if pod["status"].get("phase") == "Pending":
            assert early.returncode != 0 and "is waiting to start: ContainerCreating" in early.stderr
            assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
        _wait_phase(kubectl, wait, name, "Running")
        follow = _Follow(control_plane, name)
        assert follow.wait(30) == 0
        assert follow.text() == [*_expected_lines(args, 5), "done"]
        # Streamed one by one, one per 0.3 s epoch (loosely: the machine may be busy).
        arrivals = [t for t, _ in follow.lines[:-1]]
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        assert arrivals[-1] - arrivals[0] >= 0.8 and sum(g > 0.1 for g in gaps) >= 3, gaps
    finally:
        _delete(kubectl, "pod", name)


@cluster
def test_kubelet_api_requires_client_cert_and_404s_unknown_pods(sim, control_plane, kubectl, wait, tmp_path):
    name = _name("api")
    _create(kubectl, _pod(sim, name, args=["--epochs=4", "--quality=0.5"], env={"SIM_METRIC": "loss"}))
    cert, key = control_plane.issue_client_cert("simtest-client", "simtest-client")
    ctx = ssl.create_default_context(cafile=str(control_plane.kubelet_ca_file))
    ctx.load_cert_chain(str(cert), str(key))
    base = f"https://127.0.0.1:{sim.port}"

    def get(path: str, **query) -> tuple[int, str]:
        url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    try:
        _wait_phase(kubectl, wait, name, "Succeeded")
        assert get("/healthz") == (200, "ok")
        assert get("/containerLogs/default/no-such-pod/train") == (404, 'pod "no-such-pod" does not exist')
        assert get(f"/containerLogs/default/{name}/nope") == (404, f'container "nope" not found in pod "{name}"')
        status, text = get(f"/containerLogs/default/{name}/train", timestamps="true")
        lines = text.splitlines()
        assert status == 200 and [line.split(" ", 1)[1] for line in lines] == [
            *_expected_lines(["--quality=0.5"], 4, metric="loss"), "done"
        ]
        third_ts = lines[2].split(" ", 1)[0]
        assert get(f"/containerLogs/default/{name}/train", sinceTime=third_ts)[1].splitlines()[0].startswith("epoch=3 ")
        assert get(f"/containerLogs/default/{name}/train", tailLines="0") == (200, "")
        assert get(f"/containerLogs/default/{name}/train", tailLines="-1")[0] == 422
        assert get(f"/containerLogs/default/{name}/train", limitBytes="abc")[0] == 400
        assert get(f"/containerLogs/default/{name}/train", follow="true", tailLines="1") == (200, "done\n")

        # Without a client certificate signed by the apiserver's kubelet-client CA: no.
        bare = ssl.create_default_context(cafile=str(control_plane.kubelet_ca_file))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            with urllib.request.urlopen(base + "/healthz", context=bare, timeout=10) as r:
                r.read()
    finally:
        _delete(kubectl, "pod", name)
    wait(lambda: get(f"/containerLogs/default/{name}/train")[0] == 404, timeout=30, interval=0.1,
         what="logs to go with the pod")


# --------------------------------------------------------------------------
# Jobs, failures, deletion, suspension
# --------------------------------------------------------------------------


@cluster
def test_job_pod_completes_and_job_is_complete(sim, kubectl, wait):
    name = _name("job")
    sidecar = {"name": "sidecar", "image": "registry.local/sidecar:1"}
    _create(kubectl, _job(sim, name, args=["--epochs=3", "--lr=0.02"], extra_containers=[sidecar]))
    try:
        wait(lambda: _job_condition(kubectl, name, "Complete"), timeout=30, interval=0.2, what=f"Job {name} Complete")
        (pod,) = _job_pods(kubectl, name)
        assert pod["status"]["phase"] == "Succeeded"
        assert _terminated(pod, "train")["exitCode"] == 0 and _terminated(pod, "sidecar")["exitCode"] == 0
        pname = pod["metadata"]["name"]
        assert kubectl("logs", pname, "-c", "train").stdout.splitlines()[-1] == "done"
        assert kubectl("logs", pname, "-c", "sidecar").stdout == ""
        assert _get(kubectl, "job", name)["status"]["succeeded"] == 1
    finally:
        _delete(kubectl, "job", name)


@cluster
def test_failures_oom_exit_code_and_eviction(sim, kubectl, wait):
    job, crash, evict = _name("oom"), _name("crash"), _name("evict")
    _create(
        kubectl,
        _job(sim, job, args=["--epochs=10"], env={"SIM_FAIL": "oom@2"}),
        _pod(sim, crash, args=["--epochs=10"], env={"SIM_FAIL": "exit:3@3"}),
        _pod(sim, evict, args=["--epochs=10"], env={"SIM_FAIL": "evict@2"}),
    )
    try:
        failed = wait(lambda: _job_condition(kubectl, job, "Failed"), timeout=30, interval=0.2, what=f"Job {job} Failed")
        assert failed["reason"] == "BackoffLimitExceeded"
        (pod,) = _job_pods(kubectl, job)
        assert pod["status"]["phase"] == "Failed"
        assert (_terminated(pod)["reason"], _terminated(pod)["exitCode"]) == ("OOMKilled", 137)
        assert kubectl("logs", pod["metadata"]["name"]).stdout.splitlines() == _expected_lines(["--epochs=10"], 1)

        pod = _wait_phase(kubectl, wait, crash, "Failed")
        assert (_terminated(pod)["reason"], _terminated(pod)["exitCode"]) == ("Error", 3)
        assert len(kubectl("logs", crash).stdout.splitlines()) == 2

        pod = _wait_phase(kubectl, wait, evict, "Failed")
        assert pod["status"]["reason"] == "Evicted" and "low on resource" in pod["status"]["message"]
        disruption = next(c for c in pod["status"]["conditions"] if c["type"] == "DisruptionTarget")
        assert disruption["reason"] == "TerminationByKubelet"
        assert _terminated(pod)["exitCode"] == 137
    finally:
        _delete(kubectl, "job", job)
        _delete(kubectl, "pod", crash, evict)


@cluster
def test_deleted_pod_gets_sigterm_then_is_removed(sim, control_plane, kubectl, wait):
    """A finalizer keeps the objects around to look at their last status."""
    hold = "kubesweep.dev/test-hold"
    polite, stubborn = _name("polite"), _name("stubborn")
    _create(
        kubectl,
        _pod(sim, polite, finalizers=[hold], args=["--epochs=200"]),
        _pod(sim, stubborn, finalizers=[hold], args=["--epochs=200"], env={"SIM_IGNORE_SIGTERM": "1"}, grace=1),
    )
    try:
        for n in (polite, stubborn):
            _wait_phase(kubectl, wait, n, "Running")
        follow = _Follow(control_plane, polite)
        wait(lambda: len(follow.lines) >= 2, timeout=30, interval=0.05, what="two epochs")
        t0 = time.monotonic()
        kubectl("delete", "pod", polite, stubborn, "--wait=false")
        assert follow.wait(30) == 0
        lines = follow.text()
        assert lines[-1] == "stopping: received SIGTERM" and all(s.startswith("epoch=") for s in lines[:-1])

        pod = _wait_phase(kubectl, wait, polite, "Failed")
        assert (_terminated(pod)["exitCode"], _terminated(pod)["reason"]) == (143, "Error")
        assert pod["metadata"]["deletionGracePeriodSeconds"] == 0  # the kubelet's final delete
        pod = _wait_phase(kubectl, wait, stubborn, "Failed")
        assert time.monotonic() - t0 >= 0.9  # waited out its 1 s grace period
        assert _terminated(pod)["exitCode"] == 137  # SIGKILL
        assert kubectl("logs", stubborn).stdout.splitlines()[-1] == "stopping: received SIGTERM"
    finally:
        for n in (polite, stubborn):
            kubectl("patch", "pod", n, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    wait(lambda: kubectl("get", "pod", polite, check=False).returncode != 0, timeout=30, interval=0.1, what="pod gone")
    gone = kubectl("logs", polite, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


@cluster
def test_suspending_a_job_stops_and_deletes_its_pod(sim, control_plane, kubectl, wait):
    name = _name("susp")
    _create(kubectl, _job(sim, name, args=["--epochs=200", "--lr=0.05"]))
    try:
        (pod,) = wait(lambda: [p for p in _job_pods(kubectl, name) if p["status"].get("phase") == "Running"],
                      timeout=30, interval=0.1, what="a Running job pod")
        pname = pod["metadata"]["name"]
        follow = _Follow(control_plane, pname)
        wait(lambda: len(follow.lines) >= 2, timeout=30, interval=0.05, what="two epochs")
        kubectl("patch", "job", name, "--type=merge", "-p", '{"spec":{"suspend":true}}')
        assert follow.wait(30) == 0
        lines = follow.text()
        assert lines[-1] == "stopping: received SIGTERM"
        assert all(s.startswith("epoch=") for s in lines[:-1])

        wait(lambda: not _job_pods(kubectl, name), timeout=30, interval=0.1, what="the job's pod to be deleted")
        wait(lambda: _job_condition(kubectl, name, "Suspended"), timeout=30, interval=0.2, what="Suspended")
        time.sleep(1.0)
        assert _job_pods(kubectl, name) == []  # no replacement pod
        status = _get(kubectl, "job", name)["status"]
        assert not status.get("active") and not _job_condition(kubectl, name, "Failed")
    finally:
        _delete(kubectl, "job", name)


# --------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------


@cluster
def test_stop_removes_the_nodes(control_plane, kubectl):
    prefix = f"{_name('bye')}-"
    sim2 = SimKubelet.for_control_plane(control_plane, gpu_nodes(1, gpus=2, prefix=prefix), epoch_seconds=EPOCH)
    with sim2:
        (node,) = sim2.node_names
        assert _get(kubectl, "node", node)["status"]["allocatable"][GPU_RESOURCE] == "2"
    assert kubectl("get", "node", node, check=False).returncode != 0
    assert kubectl("get", "lease", node, "-n", "kube-node-lease", check=False).returncode != 0
