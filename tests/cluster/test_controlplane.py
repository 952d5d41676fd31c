"""The real control plane works: version, CRDs, scheduling of GPU pods, Jobs + GC,
ServiceAccount tokens, and pods/log through a (tiny, simulated) kubelet over TLS."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import ssl
import threading
import urllib.request
import uuid

import pytest

from kubesweep.devcluster import kube_version

pytestmark = pytest.mark.cluster


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _get(kubectl, *args) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def _make_ready_node(kubectl, name: str, *, labels=None, taints=None, capacity=None, kubelet_port=None):
    """A Node object as a kubelet would register it, Ready, with a fresh Lease."""
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or []},
    }
    kubectl("create", "-f", "-", input=json.dumps(node))
    resources = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi", **(capacity or {})}
    status = {
        "capacity": resources,
        "allocatable": resources,
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": name},
        ],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "simulated kubelet is posting ready status",
                "lastHeartbeatTime": _now(),
                "lastTransitionTime": _now(),
            }
        ],
    }
    if kubelet_port:
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": kubelet_port}}
    kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}))
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": 40,
            "renewTime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(lease))


def _delete_node(kubectl, name: str) -> None:
    kubectl("delete", "node", name, "--ignore-not-found", "--wait=false", check=False)
    kubectl("delete", "lease", name, "-n", "kube-node-lease", "--ignore-not-found", check=False)


def test_version_is_the_pinned_release(kubectl):
    out = json.loads(kubectl("version", "-o", "json").stdout)
    server = out["serverVersion"]
    want = kube_version()
    assert server["gitVersion"] == want
    assert server["major"] == want[1:].split(".")[0]
    assert server["minor"] == want[1:].split(".")[1]


def test_crd_and_custom_object(kubectl):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.kubesweep.dev"},
        "spec": {
            "group": "test.kubesweep.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(crd))
    try:
        kubectl("wait", "--for=condition=Established", "crd/widgets.test.kubesweep.dev", "--timeout=60s")
        obj = {
            "apiVersion": "test.kubesweep.dev/v1",
            "kind": "Widget",
            "metadata": {"name": "w1", "namespace": "default"},
            "spec": {"size": 3},
        }
        kubectl("apply", "-f", "-", input=json.dumps(obj))
        got = _get(kubectl, "widgets.test.kubesweep.dev", "w1", "-n", "default")
        assert got["spec"] == {"size": 3}
        # The structural schema is enforced by the real apiserver.
        bad = kubectl(
            "apply", "-f", "-", check=False,
            input=json.dumps({**obj, "metadata": {"name": "w2"}, "spec": {"size": 0}}),
        )
        assert bad.returncode != 0 and "spec.size" in bad.stderr
    finally:
        kubectl("delete", "crd", "widgets.test.kubesweep.dev", "--ignore-not-found", check=False)


def _gpu_pod(name: str, gpus: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
            ],
            "containers": [
                {
                    "name": "train",
                    "image": "busybox",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def test_scheduler_binds_gpu_pod_and_rejects_oversized_one(kubectl, wait):
    node = _name("gpu-node")
    fits, too_big = _name("gpu-1"), _name("gpu-9")
    _make_ready_node(
        kubectl,
        node,
        labels={"nvidia.com/gpu.present": "true"},
        taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        capacity={"nvidia.com/gpu": "8"},
    )
    try:
        got = _get(kubectl, "node", node)
        assert got["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        kubectl("create", "-f", "-", input=json.dumps(_gpu_pod(fits, 1)))
        kubectl("create", "-f", "-", input=json.dumps(_gpu_pod(too_big, 9)))

        bound = wait(
            lambda: _get(kubectl, "pod", fits)["spec"].get("nodeName"),
            timeout=60,
            what=f"pod {fits} to be scheduled",
        )
        assert bound == node

        def unschedulable():
            pod = _get(kubectl, "pod", too_big)
            for c in pod.get("status", {}).get("conditions", []):
                if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable":
                    return pod
            return None

        pod = wait(unschedulable, timeout=60, what=f"pod {too_big} to be Unschedulable")
        assert pod["status"]["phase"] == "Pending"
        assert not pod["spec"].get("nodeName")
        cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
        assert "nvidia.com/gpu" in cond.get("message", "")
    finally:
        # No kubelet confirms the deletion of a bound pod: force it.
        kubectl("delete", "pod", fits, too_big, "--ignore-not-found", "--grace-period=0", "--force", check=False)
        _delete_node(kubectl, node)


def test_job_controller_creates_pod_and_gc_deletes_it(kubectl, wait):
    job = _name("gc-job")
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job, "namespace": "default"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    # Matches no node: the pod stays unscheduled, so deleting
                    # it needs no kubelet.
                    "nodeSelector": {"kubesweep.dev/no-such-node": "true"},
                    "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                }
            },
        },
    }
    kubectl("create", "-f", "-", input=json.dumps(manifest))

    def job_pods():
        return _get(kubectl, "pods", "-n", "default", "-l", f"job-name={job}")["items"]

    pods = wait(job_pods, timeout=60, what=f"the Job controller to create a pod for {job}")
    assert len(pods) == 1
    owner = pods[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner.get("controller")) == ("Job", job, True)

    kubectl("delete", "job", job, "-n", "default", "--cascade=background", "--wait=false")
    wait(lambda: not job_pods(), timeout=90, what=f"the garbage collector to delete the pods of {job}")
    gone = kubectl("get", "job", job, "-n", "default", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_serviceaccount_token_authenticates(control_plane, kubectl):
    token = kubectl("create", "token", "default", "-n", "default").stdout.strip()
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    req = urllib.request.Request(
        f"{control_plane.server}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=json.dumps(review).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    ctx = ssl.create_default_context(cafile=str(control_plane.ca_file))
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        out = json.loads(r.read())
    assert out["status"]["userInfo"]["username"] == "system:serviceaccount:default:default"


class _FakeKubelet(http.server.ThreadingHTTPServer):
    """Just enough of a kubelet's HTTPS API for the apiserver's pods/log."""

    daemon_threads = True

    def __init__(self, cp):
        self.requests: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), _FakeKubeletHandler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cp.kubelet_serving_cert_file), str(cp.kubelet_serving_key_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(cp.kubelet_client_ca_file))
        self.socket = ctx.wrap_socket(self.socket, server_side=True)


class _FakeKubeletHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        peer = dict(x[0] for x in self.connection.getpeercert()["subject"])
        self.server.requests.append((self.path, peer.get("commonName", "")))
        if self.path.startswith("/containerLogs/"):
            body = b"hello from the simulated kubelet\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


def test_pod_logs_go_to_the_kubelet_over_tls(control_plane, kubectl):
    kubelet = _FakeKubelet(control_plane)
    thread = threading.Thread(target=kubelet.serve_forever, daemon=True)
    thread.start()
    node, pod = _name("sim-node"), _name("logs")
    try:
        _make_ready_node(
            kubectl,
            node,
            taints=[{"key": "kubesweep.dev/test", "value": "logs", "effect": "NoSchedule"}],
            kubelet_port=kubelet.server_address[1],
        )
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "namespace": "default"},
            "spec": {
                "nodeName": node,
                "tolerations": [{"key": "kubesweep.dev/test", "operator": "Exists"}],
                "containers": [{"name": "main", "image": "busybox"}],
            },
        }
        kubectl("create", "-f", "-", input=json.dumps(manifest))
        out = kubectl("logs", pod, "-c", "main", "-n", "default")
        assert out.stdout == "hello from the simulated kubelet\n"
        path, client_cn = kubelet.requests[-1]
        assert path.startswith(f"/containerLogs/default/{pod}/main")
        assert client_cn == "kube-apiserver-kubelet-client"
    finally:
        kubectl("delete", "pod", pod, "--ignore-not-found", "--grace-period=0", "--force", check=False)
        _delete_node(kubectl, node)
        kubelet.shutdown()
        kubelet.server_close()


def test_stop_leaves_nothing_running(control_plane, tmp_path):
    """A second, independent control plane: started as a context manager, then gone."""
    import os
    import socket

    from kubesweep.devcluster import ControlPlane

    with ControlPlane(tmp_path / "cp2", control_plane.bin_dir) as cp2:
        assert cp2.running and cp2.server != control_plane.server
        pids = [p.popen.pid for p in cp2._procs]
        ports = [cp2.apiserver_port, cp2.etcd_client_port]
        assert len(pids) == 4
        assert (tmp_path / "cp2" / "logs" / "kube-apiserver.log").stat().st_size > 0
    assert not cp2.running
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
