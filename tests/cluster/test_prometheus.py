"""The operator's metrics as a real Prometheus sees them.

A real Prometheus (Debian's `prometheus` package: /usr/bin/prometheus, installed by .ci/prepare)
scrapes the real operator every second while a sweep with early stops runs on the control plane;
after the sweep has ended and Prometheus has scraped again, the HTTP API's answers must equal the
Sweep's status (GPU-seconds and iterations saved, runs by state), and the decision-latency p99 of
docs/metrics.md must be a number. `promtool check metrics` (shipped with it) lints /metrics.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest


from .conftest import SKIP_ENV, _skip_cluster, wait_for
from .operator_fixtures import stop_process, apply, free_port, get, sim_sweep

pytestmark = pytest.mark.cluster

PROMETHEUS = Path(os.environ.get("PROMETHEUS", "/usr/bin/prometheus"))
PROMTOOL = Path(os.environ.get("PROMTOOL", "/usr/bin/promtool"))
INSTALL_HINT = "install it with `.ci/prepare` (or `apt-get install --no-install-recommends prometheus`)"
EPOCH = 0.2
QUALITIES = [0.3, 0.9, 0.1, 1.2, 0.5, 1.5]
EPOCHS = 6


def _need(path: Path) -> None:
    if os.access(path, os.X_OK):
        return
    if _skip_cluster():
        pytest.skip(f"{SKIP_ENV}=1 and {path} is missing")
    pytest.fail(f"{path} is missing: the Prometheus tests need Debian's prometheus package; {INSTALL_HINT}",
                pytrace=False)


class Prometheus:
    """Our own Prometheus process: config and TSDB in tmp, loopback only, 1 s scrapes."""

    def __init__(self, workdir: Path, target: str):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        # JSON is YAML.
        self.config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "kubesweep", "static_configs": [{"targets": [target]}]}],
        }, indent=2))
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Prometheus":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus did not become ready:\n{self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.proc)

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:]) if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> dict:
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def scalar(self, expr: str) -> float:
        result = self.query(expr)
        assert len(result) == 1, f"{expr}: expected one series, got {result}"
        return float(result[0]["value"][1])

    def last_scrape(self) -> tuple[float, str]:
        """(unix time of the last scrape of the operator, health)."""
        targets = self.api("targets", state="active")["activeTargets"]
        if not targets:  # not discovered yet, just after start
            return 0.0, ""
        (t,) = targets
        ts = t.get("lastScrape") or "0001-01-01T00:00:00Z"
        if ts.startswith("0001-"):
            return 0.0, t.get("health", "")
        # RFC 3339 with up to nanoseconds and maybe no fraction: parse the fraction by hand.
        date, _, frac = ts.rstrip("Z").partition(".")
        parsed = dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc)
        offset = 0.0
        if frac:
            digits = "".join(ch for ch in frac if ch.isdigit())
            offset = float("0." + digits) if digits else 0.0
        return parsed.timestamp() + offset, t.get("health", "")


@pytest.fixture
def prometheus(operator, tmp_path):
    prom = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{operator.metrics_port}").start()
    yield prom
    prom.stop()


def _phase(kubectl, ns: str, name: str) -> str | None:
    return (get(kubectl, ns, "sweep", name).get("status") or {}).get("phase")


def test_prometheus_sees_what_the_sweep_status_says(kubectl, sim, namespace, operator, request):
    _need(PROMETHEUS)  # a FAILED test (not an error in a fixture) when the package is missing
    prometheus: Prometheus = request.getfixturevalue("prometheus")
    # Scraped once before the sweep: the rate() of the decision latency then has a zero to start from.
    wait_for(lambda: prometheus.last_scrape()[1] == "up", timeout=30, interval=0.3,
             what="prometheus to scrape the operator\n" + prometheus.log_tail())
    apply(kubectl, namespace, sim_sweep("prom", sim.pool, QUALITIES, epochs=EPOCHS, parallelism=3))
    wait_for(lambda: _phase(kubectl, namespace, "prom") == "Succeeded", timeout=120, interval=0.5,
             what="sweep prom to succeed\n" + operator.log_tail())
    ended = time.time()
    status = get(kubectl, namespace, "sweep", "prom")["status"]
    assert status["runs"]["earlyStopped"] > 0 and status["gpuSecondsSaved"] > 0, status
    # A scrape that started after the sweep's final status was written (plus a second of slack).
    wait_for(lambda: prometheus.last_scrape()[0] > ended + 1.0 and prometheus.last_scrape()[1] == "up",
             timeout=30, interval=0.3, what="a scrape after the sweep ended\n" + prometheus.log_tail())

    sel = f'namespace="{namespace}",sweep="prom"'
    saved = prometheus.scalar(f"kubesweep_gpu_seconds_saved_total{{{sel}}}")
    assert saved > 0
    assert saved == pytest.approx(status["gpuSecondsSaved"], abs=0.051), "the status rounds to 0.1 GPU-second"
    assert prometheus.scalar(f"kubesweep_iterations_saved_total{{{sel}}}") == status["iterationsSaved"] > 0
    assert prometheus.scalar(f"kubesweep_iterations_trained_total{{{sel}}}") == status["iterationsTrained"]

    by_state = {r["metric"]["state"]: float(r["value"][1])
                for r in prometheus.query(f"sum by (state) (kubesweep_runs{{{sel}}})")}
    keys = {"Pending": "pending", "Running": "running", "Succeeded": "succeeded", "EarlyStopped": "earlyStopped",
            "Failed": "failed"}
    assert by_state == {state: float(status["runs"][key]) for state, key in keys.items()}, (by_state, status["runs"])
    assert sum(by_state.values()) == status["runs"]["total"] == len(QUALITIES)

    stops = {r["metric"]["band"]: float(r["value"][1])
             for r in prometheus.query(f"sum by (band) (kubesweep_early_stops_total{{{sel}}})")}
    assert sum(stops.values()) == status["runs"]["earlyStopped"]

    # The decision latency p99, as a number: over the counters, and as docs/metrics.md writes it.
    p99 = prometheus.scalar("histogram_quantile(0.99, sum by (le) (kubesweep_decision_latency_seconds_bucket))")
    assert math.isfinite(p99) and 0 < p99 <= 10, p99
    documented = "histogram_quantile(0.99, sum by (le) (rate(kubesweep_decision_latency_seconds_bucket[5m])))"
    p99_rate = prometheus.scalar(documented)
    assert math.isfinite(p99_rate) and 0 < p99_rate <= 10, p99_rate
    assert prometheus.scalar("sum(kubesweep_decision_latency_seconds_count)") >= status["runs"]["earlyStopped"]


def test_promtool_check_metrics_finds_no_problem(kubectl, sim, namespace, operator):
    _need(PROMTOOL)
    apply(kubectl, namespace, sim_sweep("lint", sim.pool, QUALITIES[:4], epochs=EPOCHS, parallelism=4))
    wait_for(lambda: _phase(kubectl, namespace, "lint") == "Succeeded", timeout=120, interval=0.5,
             what="sweep lint to succeed\n" + operator.log_tail())
    text = operator.metrics_text()
    # Every family, with series: labelled totals, early stops by band, the latency histogram.
    for name in ("kubesweep_runs{", "kubesweep_gpu_seconds_saved_total{", "kubesweep_early_stops_total{",
                 "kubesweep_metric_rows_total{", "kubesweep_decision_latency_seconds_bucket{"):
        assert name in text, f"{name} has no series in /metrics"
    proc = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    problems = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and not problems, f"promtool check metrics exited {proc.returncode}:\n{problems}"
