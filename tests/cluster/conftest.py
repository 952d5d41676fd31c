"""Fixtures for tests against a real Kubernetes control plane.

``control_plane`` (session scope) builds-or-reuses the binaries with
hack/build-controlplane.sh and starts a :class:`kubesweep.devcluster.ControlPlane`
in a temporary directory. With ``KUBESWEEP_SKIP_CLUSTER=1`` every test using it
is skipped; otherwise a control plane that cannot be built or started FAILS
the tests (it is never skipped silently).

The build runs once, at collection time and outside any test's timeout, and
only when a selected test uses ``control_plane``: a cold build takes a long
time, a warm one well under a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from kubesweep.devcluster import ControlPlane, ControlPlaneError, build_binaries

SKIP_ENV = "KUBESWEEP_SKIP_CLUSTER"
SKIP_REASON = f"{SKIP_ENV}=1: tests needing the real control plane are skipped"

_build: dict[str, object] = {}


def _skip_cluster() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() in ("1", "true", "yes")


def _uses_control_plane(item: pytest.Item) -> bool:
    return "control_plane" in getattr(item, "fixturenames", ())


def pytest_collection_finish(session: pytest.Session) -> None:
    if _skip_cluster() or _build or session.config.option.collectonly:
        return
    if not any(_uses_control_plane(i) for i in session.items):
        return
    t0 = time.monotonic()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("kubesweep: building or reusing the control-plane binaries ...")
    try:
        _build["bin_dir"] = build_binaries(stream=sys.stderr)
    except (ControlPlaneError, OSError, subprocess.SubprocessError) as e:
        _build["error"] = f"building the control plane failed: {e}"
    _build["seconds"] = time.monotonic() - t0


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory):
    if _skip_cluster():
        pytest.skip(SKIP_REASON)
    if "error" in _build:
        pytest.fail(str(_build["error"]), pytrace=False)
    bin_dir = _build.get("bin_dir")
    if bin_dir is None:  # e.g. the fixture was requested dynamically
        try:
            bin_dir = build_binaries(stream=sys.stderr)
        except ControlPlaneError as e:
            pytest.fail(f"building the control plane failed: {e}", pytrace=False)
    workdir = tmp_path_factory.mktemp("controlplane")
    cp = ControlPlane(workdir, bin_dir)
    try:
        cp.start()
    except ControlPlaneError as e:
        pytest.fail(f"the control plane did not start (logs in {workdir / 'logs'}): {e}", pytrace=False)
    try:
        yield cp
    finally:
        cp.stop()


KubectlFn = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> KubectlFn:
    """``kubectl(*args, input=None, check=True, timeout=60)`` -> CompletedProcess (text).

    Runs the real kubectl (``$KUBECTL`` or /usr/bin/kubectl, else the one on
    PATH) against the control plane's admin kubeconfig.
    """
    exe = os.environ.get("KUBECTL") or (
        "/usr/bin/kubectl" if os.path.exists("/usr/bin/kubectl") else shutil.which("kubectl")
    )
    if not exe:
        pytest.fail("kubectl not found (set KUBECTL)", pytrace=False)

    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 60):
        cmd = [exe, "--kubeconfig", str(control_plane.kubeconfig), *map(str, args)]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    return run


def wait_for(predicate: Callable[[], object], timeout: float = 60, interval: float = 0.5, what: str = ""):
    """Poll predicate until it returns a truthy value; return it or fail after timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate} (last: {last!r})")


@pytest.fixture
def wait():
    return wait_for


@pytest.fixture(scope="session")
def control_plane_dir(control_plane: ControlPlane) -> Path:
    return control_plane.workdir


SIM_EPOCH = 0.2  # seconds per simulated epoch in the operator tests


@pytest.fixture(scope="module")
def sim(control_plane, request):
    """2 simulated nodes x 8 GPUs for one test module, in a pool of their own (nodeSelector
    `kubesweep.dev/sim-pool: <sim.pool>`), so modules never take each other's GPUs."""
    import uuid

    from kubesweep.devcluster.simkubelet import SimKubelet, gpu_nodes  # lazy: aiohttp

    from .operator_fixtures import POOL_LABEL

    pool = f"{request.module.__name__.rsplit('.', 1)[-1].replace('test_', '').replace('_', '')[:6]}-{uuid.uuid4().hex[:6]}"
    nodes = gpu_nodes(2, gpus=8, prefix=f"{pool}-gpu-", labels={POOL_LABEL: pool})
    with SimKubelet.for_control_plane(control_plane, nodes, epoch_seconds=SIM_EPOCH) as s:
        s.pool = pool  # type: ignore[attr-defined]
        yield s


@pytest.fixture(scope="module")
def crds(kubectl):
    from .operator_fixtures import ROOT

    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/sweeps.kubesweep.io", "crd/sweepruns.kubesweep.io")


@pytest.fixture
def namespace(kubectl, crds):
    """A fresh namespace (with its default ServiceAccount) per test, deleted afterwards."""
    from .operator_fixtures import new_namespace

    ns = new_namespace(kubectl)
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def operator(control_plane, namespace, tmp_path):
    """The real `kubesweep operator` process watching `namespace`, with the admin kubeconfig."""
    from .operator_fixtures import OperatorProcess

    op = OperatorProcess(control_plane.kubeconfig, namespace, tmp_path / "operator").start()
    yield op
    op.stop()
