import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"


@pytest.fixture
def root() -> pathlib.Path:
    return ROOT


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary, built from the Go module proxy by hack/build-helm.sh (cached). It fails the
    test when it cannot be built, and skips only with KUBESWEEP_SKIP_CLUSTER=1."""
    try:
        proc = subprocess.run(["bash", str(ROOT / "hack" / "build-helm.sh")], capture_output=True, text=True,
                              timeout=1700)
    except (OSError, subprocess.TimeoutExpired) as e:
        problem = f"hack/build-helm.sh did not run to the end: {e}"
    else:
        path = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode == 0 and path and os.access(path, os.X_OK):
            return path
        problem = f"hack/build-helm.sh exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    if os.environ.get("KUBESWEEP_SKIP_CLUSTER", "").strip().lower() in ("1", "true", "yes"):
        pytest.skip(f"KUBESWEEP_SKIP_CLUSTER=1 and helm could not be built: {problem}")
    pytest.fail(f"helm is needed to test the chart and could not be built: {problem}", pytrace=False)
