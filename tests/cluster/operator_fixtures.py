"""Helpers for running the real operator against the dev control plane (imported by tests)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
POOL_LABEL = "kubesweep.dev/sim-pool"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after 15 s: a test never leaves a process behind."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class OperatorProcess:
    """`kubesweep operator` as a real process, watching one namespace (``namespace=None``: all
    of them, ``--all-namespaces``), with the credentials of ``kubeconfig``."""

    def __init__(self, kubeconfig: Path, namespace: str | None, workdir: Path):
        self.kubeconfig, self.namespace, self.workdir = kubeconfig, namespace, workdir
        self.metrics_port, self.push_port = free_port(), free_port()
        self.record_dir = workdir / "record"
        self.record_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "operator.log"
        self.starts = 0

    def start(self) -> "OperatorProcess":
        self.starts += 1
        log = open(self.log_path, "a")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        scope = ["--all-namespaces"] if self.namespace is None else ["--namespace", self.namespace]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubesweep.cli", "operator", *scope,
             "--metrics-port", str(self.metrics_port), "--push-port", str(self.push_port),
             "--record-dir", str(self.record_dir)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.metrics_text()
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"operator did not come up:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, no final status writes."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name: str, **labels: str) -> float | None:
        for line in self.metrics_text().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return None

    def log_tail(self, n: int = 80) -> str:
        return "\n".join(self.log_path.read_text().splitlines()[-n:]) if self.log_path.exists() else ""

    def record(self, sweep: str, namespace: str | None = None) -> Path:
        return self.record_dir / f"{namespace or self.namespace}_{sweep}.jsonl"


def sim_sweep(name: str, pool: str, qualities: list[float], *, epochs: int = 12, parallelism: int = 3,
              early_terminate: dict | None = None, env: dict | None = None, extra: dict | None = None) -> dict:
    """A Sweep whose runs the simulated kubelet plays: loss converges to each run's `quality`."""
    spec = {
        "method": "grid",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "program": "train.py",
        "parameters": {"quality": {"values": qualities}, "epochs": {"value": epochs}},
        "early_terminate": early_terminate or {"type": "hyperband", "min_iter": 2, "eta": 3},
        "parallelism": parallelism,
        "stop_grace_period_seconds": 5,
        "max_failed_runs": 2,
        "template": {"spec": {
            "containers": [{"name": "train", "image": "registry.local/train:1",
                            "env": [{"name": k, "value": str(v)} for k, v in (env or {}).items()],
                            "resources": {"limits": {"nvidia.com/gpu": 1}}}],
            "nodeSelector": {POOL_LABEL: pool, "nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }},
    }
    spec.update(extra or {})
    return {"apiVersion": "kubesweep.io/v1alpha1", "kind": "Sweep", "metadata": {"name": name}, "spec": spec}


def apply(kubectl, namespace: str, obj: dict) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))


def get(kubectl, namespace: str, *what: str) -> dict:
    return json.loads(kubectl("get", "-n", namespace, *what, "-o", "json").stdout)


def new_namespace(kubectl) -> str:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    kubectl("create", "serviceaccount", "default", "-n", ns, check=False)
    return ns
