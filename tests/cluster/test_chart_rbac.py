"""The Helm chart against the real API server, and its RBAC as the operator's only credentials.

1. `helm template` of the chart (all-namespaces and namespaced) goes through
   `kubectl apply --dry-run=server`: every object is valid for this Kubernetes version.
2. The chart's ServiceAccount and RBAC objects (not the Deployment: there is no image) are applied
   for real; the operator process runs with a token of that ServiceAccount and the chart's own
   namespace flags, and carries a sweep to the end: Jobs, pods/log, early stops (Job suspend),
   SweepRun and Sweep status, Events, and the push endpoint's TokenReview. So a rule the operator
   needs and the chart lacks fails here, not in a user's install; the log must have no 403.
3. A negative control: the same with the `pods/log` rule removed never gets a single iteration,
   and the operator's log shows the 403, proving that (2) can fail.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml


from .conftest import wait_for
from .operator_fixtures import ROOT, OperatorProcess, apply, get, new_namespace, sim_sweep

# The first test may pay for building helm from source (~3 min cold) inside its timeout.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

CHART = ROOT / "charts" / "kubesweep"
RELEASE_NS = "kubesweep-system"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
EPOCH = 0.2
QUALITIES = [0.3, 0.9, 0.1, 1.2, 0.5, 1.5]  # min_iter 2, eta 3: bands 2 and 6
EPOCHS = 6
# A 403 that is no RBAC problem: objects of a sweep left by an earlier test in a namespace being
# deleted (an all-namespaces operator sees them). Every other 403 fails the test.
NOT_RBAC = "because it is being terminated"


# --------------------------------------------------------------------------- fixtures



def helm_template(helm: str, release: str, namespace: str, *sets: str) -> str:
    args = [helm, "template", release, str(CHART), "-n", namespace]
    for s in sets:
        args += ["--set", s]
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/kubesweep-helm/cache",
           "HELM_CONFIG_HOME": "/tmp/kubesweep-helm/config", "HELM_DATA_HOME": "/tmp/kubesweep-helm/data"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def docs_of(manifest: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifest) if d]






def ensure_namespace(kubectl, name: str) -> None:
    out = kubectl("create", "namespace", name, check=False)
    assert out.returncode == 0 or "AlreadyExists" in out.stderr, out.stderr


# --------------------------------------------------------------------------- 1. server dry run

@pytest.mark.parametrize("mode", ["all-namespaces", "namespaced"])
def test_rendered_chart_passes_server_side_dry_run(helm, kubectl, crds, mode):
    ensure_namespace(kubectl, RELEASE_NS)
    # The Roles of namespaced mode go into namespaces that must exist.
    watched = [new_namespace(kubectl), new_namespace(kubectl)] if mode == "namespaced" else []
    try:
        _dry_run(helm, kubectl, mode, ["watchNamespaces={" + ",".join(watched) + "}"] if watched else [])
    finally:
        for ns in watched:
            kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _dry_run(helm, kubectl, mode: str, sets: list[str]) -> None:
    manifest = helm_template(helm, "kubesweep", RELEASE_NS, *sets)
    docs = docs_of(manifest)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ServiceAccount", "ClusterRole", "ConfigMap"}
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert out.returncode == 0, f"the API server refused the rendered chart ({mode}):\n{out.stderr}"
    for d in docs:
        kind, name = d["kind"].lower(), d["metadata"]["name"]
        # e.g. "deployment.apps/kubesweep created (server dry run)"
        assert re.search(rf"^{kind}(\.[\w.]+)?/{re.escape(name)} \S+ \(server dry run\)$", out.stdout, re.M), \
            f"{kind}/{name} not accepted by the dry run:\n{out.stdout}"


# --------------------------------------------------------------------------- 2. live RBAC

def write_token_kubeconfig(control_plane, token: str, path: Path) -> Path:
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "dev", "cluster": {"server": control_plane.server,
                                                 "certificate-authority": str(control_plane.ca_file)}}],
        "users": [{"name": "kubesweep-operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "dev", "user": "kubesweep-operator"}}],
        "current-context": "operator",
    }
    path.write_text(json.dumps(cfg, indent=2))
    path.chmod(0o600)
    return path


class ChartInstall:
    """The chart's ServiceAccount and RBAC objects, applied for real; the operator's token."""

    def __init__(self, helm, kubectl, control_plane, tmp_path: Path, sweep_ns: str, mode: str,
                 drop_rule: tuple[str, str] | None = None):
        self.kubectl = kubectl
        self.release = f"ks-{uuid.uuid4().hex[:6]}"
        self.operator_ns = f"{self.release}-system"
        ensure_namespace(kubectl, self.operator_ns)
        sets = [] if mode == "all-namespaces" else ["watchNamespaces={" + sweep_ns + "}"]
        self.docs = docs_of(helm_template(helm, self.release, self.operator_ns, *sets))
        objects = [d for d in self.docs if d["kind"] in RBAC_KINDS]
        if drop_rule is not None:
            group, resource = drop_rule
            dropped = 0
            for d in objects:
                if d["kind"] in ("Role", "ClusterRole"):
                    before = len(d["rules"])
                    d["rules"] = [r for r in d["rules"] if not (group in r["apiGroups"] and resource in r["resources"])]
                    dropped += before - len(d["rules"])
            assert dropped, f"the chart has no rule for {drop_rule} to remove"
        self.cluster_objects = [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in objects
                                if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
        (sa,) = [d for d in objects if d["kind"] == "ServiceAccount"]
        self.sa = sa["metadata"]["name"]
        assert sa["metadata"]["namespace"] == self.operator_ns
        token = kubectl("create", "token", self.sa, "-n", self.operator_ns, "--duration", "1h").stdout.strip()
        self.kubeconfig = write_token_kubeconfig(control_plane, token, tmp_path / "operator.kubeconfig")
        # The operator gets the namespace flags of the chart's own Deployment.
        (dep,) = [d for d in self.docs if d["kind"] == "Deployment"]
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        if mode == "all-namespaces":
            assert "--all-namespaces" in args
            self.watch: str | None = None
        else:
            assert [args[i + 1] for i, a in enumerate(args) if a == "--namespace"] == [sweep_ns]
            self.watch = sweep_ns

    def cleanup(self) -> None:
        self.kubectl("delete", "--wait=false", "--ignore-not-found", *self.cluster_objects, check=False)
        self.kubectl("delete", "namespace", self.operator_ns, "--wait=false", check=False)


@pytest.fixture
def sweep_ns(namespace):
    """The namespace the sweeps run in (conftest's fresh namespace)."""
    return namespace


@pytest.fixture
def chart_operator(helm, kubectl, control_plane, tmp_path, sweep_ns):
    """Start the operator with the chart's credentials: chart_operator(mode, drop_rule=None)."""
    started: list[tuple[ChartInstall, OperatorProcess]] = []

    def start(mode: str, drop_rule: tuple[str, str] | None = None) -> OperatorProcess:
        install = ChartInstall(helm, kubectl, control_plane, tmp_path, sweep_ns, mode, drop_rule)
        op = OperatorProcess(install.kubeconfig, install.watch, tmp_path)
        started.append((install, op))
        return op.start()

    yield start
    for install, op in started:
        op.stop()
        install.cleanup()


def forbidden_lines(op: OperatorProcess) -> list[str]:
    out = []
    for line in op.log_path.read_text().splitlines():
        message = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", "", line)  # the timestamp's ",403" is no 403
        if re.search(r"\b403\b|forbidden", message, re.I) and NOT_RBAC not in message:
            out.append(line)
    return out


def _runs(kubectl, ns: str, sweep: str) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in get(kubectl, ns, "sweepruns", "-l", f"kubesweep.io/sweep={sweep}")["items"]}


def _phase(kubectl, ns: str, sweep: str) -> str | None:
    return (get(kubectl, ns, "sweep", sweep).get("status") or {}).get("phase")


def _events(kubectl, ns: str, reason: str) -> list[str]:
    return [e["message"] for e in get(kubectl, ns, "events", "--field-selector", f"reason={reason}")["items"]]


def push(op: OperatorProcess, token: str) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{op.push_port}/v1/report", data=b'{"rows": []}', method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.parametrize("mode", ["all-namespaces", "namespaced"])
def test_operator_runs_a_sweep_with_only_the_charts_rbac(kubectl, sim, sweep_ns, chart_operator, mode):
    op = chart_operator(mode)
    apply(kubectl, sweep_ns, sim_sweep("rbac", sim.pool, QUALITIES, epochs=EPOCHS, parallelism=3))
    wait_for(lambda: _phase(kubectl, sweep_ns, "rbac") == "Succeeded", timeout=120, interval=0.5,
             what=f"sweep rbac to succeed with the chart's RBAC ({mode})\n{op.log_tail()}")

    runs = _runs(kubectl, sweep_ns, "rbac")
    states = {n: r["status"]["state"] for n, r in runs.items()}
    stopped = sorted(n for n, s in states.items() if s == "EarlyStopped")
    finished = sorted(n for n, s in states.items() if s == "Succeeded")
    assert len(runs) == len(QUALITIES) and len(stopped) + len(finished) == len(QUALITIES), states
    assert stopped and finished, states
    for n in finished:
        assert runs[n]["status"]["iteration"] == EPOCHS, "pods/log was read to the end"
    jobs = {j["metadata"]["name"]: j for j in get(kubectl, sweep_ns, "jobs")["items"]}
    assert set(jobs) == set(runs)
    assert all(jobs[n]["spec"]["suspend"] is True for n in stopped), "stopped runs' Jobs were suspended (jobs patch)"

    status = get(kubectl, sweep_ns, "sweep", "rbac")["status"]
    assert status["runs"]["earlyStopped"] == len(stopped) and status["runs"]["succeeded"] == len(finished)
    assert status["gpuSecondsSaved"] > 0

    # Events (core v1 events create).
    assert sorted(m.split(":")[0] for m in _events(kubectl, sweep_ns, "RunEarlyStopped")) == stopped
    assert _events(kubectl, sweep_ns, "SweepComplete")

    # The push endpoint authenticates with a TokenReview (cluster-scoped) and reads the pod.
    code, body = push(op, "not-a-token")
    assert code == 401 and "not accepted" in body.get("error", ""), (code, body, op.log_tail(20))
    pod = next(p for p in get(kubectl, sweep_ns, "pods")["items"]
               if p["metadata"]["labels"]["kubesweep.io/run"] in finished)
    token = kubectl("create", "token", pod["spec"]["serviceAccountName"], "-n", sweep_ns, "--audience", "kubesweep",
                    "--bound-object-kind", "Pod", "--bound-object-name", pod["metadata"]["name"],
                    "--bound-object-uid", pod["metadata"]["uid"], "--duration", "10m").stdout.strip()
    code, body = push(op, token)
    # The run has ended, so no rows are taken; reaching that answer took the TokenReview and pods get.
    assert (code, body.get("run"), body.get("state")) == (409, pod["metadata"]["labels"]["kubesweep.io/run"], "Succeeded"), \
        (code, body, op.log_tail(20))

    assert not forbidden_lines(op), "the operator was refused something the chart should grant:\n" + \
        "\n".join(forbidden_lines(op)[:20])
    assert op.proc is not None and op.proc.poll() is None, "the operator is still running"


# --------------------------------------------------------------------------- 3. negative control

def test_without_pods_log_rule_runs_fail_saying_what_is_missing(kubectl, sim, sweep_ns, chart_operator):
    op = chart_operator("namespaced", drop_rule=("", "pods/log"))
    apply(kubectl, sweep_ns, sim_sweep("nolog", sim.pool, QUALITIES, epochs=EPOCHS, parallelism=3))

    # Without its log a run cannot be judged: it is Failed with the API server's refusal as the
    # reason (never Succeeded with no data), and the failure budget ends the sweep.
    wait_for(lambda: _phase(kubectl, sweep_ns, "nolog") == "Failed", timeout=60, interval=0.5,
             what="the sweep to fail on unreadable logs\n" + op.log_tail())
    runs = _runs(kubectl, sweep_ns, "nolog")
    failed = [r for r in runs.values() if (r.get("status") or {}).get("state") == "Failed"]
    assert failed and not any((r.get("status") or {}).get("state") in ("EarlyStopped", "Succeeded") for r in runs.values())
    for r in failed:
        reason = r["status"]["reason"]
        assert reason.startswith("LogUnreadable: log unreadable: 403") and "pods/log" in reason, reason
        assert not r["status"].get("iteration")
    assert not _events(kubectl, sweep_ns, "RunEarlyStopped")
    assert _events(kubectl, sweep_ns, "RunFailed")
