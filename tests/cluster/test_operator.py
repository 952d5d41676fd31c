"""The operator against a real API server, scheduler and Job controller, with simulated GPU nodes.

Real kubectl applies the Sweep; the real operator process creates Jobs, reads each run's log
through pods/log, stops runs at the bands by suspending their Jobs, and reports it in SweepRun
and Sweep status, Events and Prometheus metrics.
"""
from __future__ import annotations

import time

import pytest

from kubesweep.engine import config as sweep_config
from kubesweep.engine.replay import parse_events, replay

from .conftest import wait_for
from .operator_fixtures import apply, get, sim_sweep

pytestmark = pytest.mark.cluster
EPOCH = 0.2


@pytest.fixture(scope="module")
def root_dir():
    from .operator_fixtures import ROOT

    return ROOT


def _runs(kubectl, ns, sweep):
    return {r["metadata"]["name"]: r for r in get(kubectl, ns, "sweepruns", "-l", f"kubesweep.io/sweep={sweep}")["items"]}


def _sweep(kubectl, ns, name):
    return get(kubectl, ns, "sweep", name)


def _events(kubectl, ns, reason):
    items = get(kubectl, ns, "events", "--field-selector", f"reason={reason}")["items"]
    return [e["message"] for e in items]


QUALITIES = [0.3, 0.9, 0.1, 1.2, 0.5, 1.5, 0.2, 1.0, 0.7]


def test_sweep_runs_to_completion_with_early_stops(kubectl, sim, namespace, operator):
    apply(kubectl, namespace, sim_sweep("hb", sim.pool, QUALITIES, epochs=12, parallelism=3))
    peak = 0

    def done():
        nonlocal peak
        runs = _runs(kubectl, namespace, "hb")
        active = sum(1 for r in runs.values() if (r.get("status") or {}).get("state") in ("Pending", "Running"))
        peak = max(peak, active)
        return (_sweep(kubectl, namespace, "hb").get("status") or {}).get("phase") == "Succeeded"

    wait_for(done, timeout=180, interval=0.3, what="sweep hb to succeed\n" + operator.log_tail())
    assert peak <= 3, f"{peak} runs were active at once with parallelism 3"

    runs = _runs(kubectl, namespace, "hb")
    assert sorted(r["spec"]["index"] for r in runs.values()) == list(range(len(QUALITIES)))
    stopped = {n: r for n, r in runs.items() if r["status"]["state"] == "EarlyStopped"}
    finished = {n: r for n, r in runs.items() if r["status"]["state"] == "Succeeded"}
    assert len(stopped) + len(finished) == len(QUALITIES)
    assert stopped and finished
    best = min(runs.values(), key=lambda r: r["spec"]["parameters"]["quality"])
    assert best["status"]["state"] == "Succeeded", "the best run must survive"
    for r in finished.values():
        assert r["status"]["iteration"] == 12 and r["status"]["reason"] == "Completed"
    jobs = {j["metadata"]["name"]: j for j in get(kubectl, namespace, "jobs")["items"]}
    assert set(jobs) == set(runs), "exactly one Job per run"
    for name, r in stopped.items():
        d = r["status"]["decision"]
        assert d["band"] in (2, 6) and r["status"]["iteration"] >= d["band"]
        assert d["value"] > d["threshold"]
        assert jobs[name]["spec"]["suspend"] is True
        assert not (jobs[name]["status"].get("failed") or jobs[name]["status"].get("succeeded")), "never restarted"
        assert r["status"]["iteration"] < 12
    # The pods of stopped runs are gone (deleted with their grace period by the Job controller).
    wait_for(lambda: not [p for p in get(kubectl, namespace, "pods")["items"]
                          if p["metadata"]["labels"]["kubesweep.io/run"] in stopped],
             timeout=30, what="stopped runs' pods to be gone")

    # One Event per stop, in words.
    msgs = _events(kubectl, namespace, "RunEarlyStopped")
    assert sorted(m.split(":")[0] for m in msgs) == sorted(stopped)
    assert all("threshold" in m and "band-" in m for m in msgs)

    # Status and printer columns.
    status = _sweep(kubectl, namespace, "hb")["status"]
    assert status["runs"]["earlyStopped"] == len(stopped) and status["runs"]["succeeded"] == len(finished)
    assert status["best"]["run"] == best["metadata"]["name"]
    assert status["iterationsSaved"] == sum(12 - r["status"]["iteration"] for r in stopped.values())
    assert status["gpuSecondsSaved"] > 0
    table = kubectl("get", "sweeps", "-n", namespace).stdout
    assert "Succeeded" in table.splitlines()[1] and "GPU-S SAVED" in table.splitlines()[0]

    # Prometheus metrics of the same facts.
    assert operator.metric("kubesweep_runs", sweep="hb", state="EarlyStopped") == len(stopped)
    assert operator.metric("kubesweep_iterations_saved_total", sweep="hb") == status["iterationsSaved"]
    assert operator.metric("kubesweep_decision_latency_seconds_count") >= len(stopped)

    # The decisions equal `kubesweep replay` of what the operator's engine saw.
    cfg = sweep_config.load(_sweep(kubectl, namespace, "hb")).config
    result = replay(cfg, parse_events(open(operator.record("hb"))))
    replayed = {n: (r["stopped"]["band"], r["stopped"]["iteration"]) for n, r in result["runs"].items() if r["stopped"]}
    live = {n: (r["status"]["decision"]["band"], r["status"]["decision"]["iteration"]) for n, r in stopped.items()}
    assert replayed == live


def test_failures_are_failed_with_reasons_and_the_budget_stops_the_sweep(kubectl, sim, namespace, operator):
    apply(kubectl, namespace, sim_sweep("oom", sim.pool, [0.5, 0.6, 0.7, 0.8, 0.9], epochs=6, parallelism=2,
                                        env={"SIM_FAIL": "oom@2"}, early_terminate={"type": "hyperband", "min_iter": 4}))
    wait_for(lambda: (_sweep(kubectl, namespace, "oom").get("status") or {}).get("phase") == "Failed",
             timeout=120, what="failure budget\n" + operator.log_tail())
    wait_for(lambda: all((r.get("status") or {}).get("state") == "Failed" for r in _runs(kubectl, namespace, "oom").values()),
             timeout=60, what="runs in flight to end")
    runs = _runs(kubectl, namespace, "oom")
    # max_failed_runs 2: the third failure stops the sweep; with parallelism 2 one more run was
    # already going, and no run starts after that (the grid has 5 points).
    assert len(runs) == 4
    assert all(r["status"]["reason"] == "OOMKilled (exit code 137)" for r in runs.values())
    status = _sweep(kubectl, namespace, "oom")["status"]
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["FailureBudgetExceeded"]["status"] == "True"
    assert _events(kubectl, namespace, "FailureBudgetExceeded")


def test_invalid_sweeps_are_refused_or_marked_invalid_and_others_keep_running(kubectl, sim, namespace, operator, root_dir):
    import yaml

    refused_by_server, marked_invalid = [], []
    for path in sorted((root_dir / "tests" / "cases" / "invalid").glob("*.yaml")):
        case = sweep_config.load_yaml(path.read_text())
        name = path.stem.replace("_", "-")[:40]
        obj = {"apiVersion": "kubesweep.io/v1alpha1", "kind": "Sweep", "metadata": {"name": name},
               "spec": {**case["sweep"], "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}
        out = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj), check=False)
        field = case["expected"]["message_names_field"]
        if out.returncode != 0:
            assert field.split(".")[-1] in out.stderr, f"{path.name}: {out.stderr}"
            refused_by_server.append(path.stem)
        else:
            marked_invalid.append((name, field))
    apply(kubectl, namespace, sim_sweep("good", sim.pool, [0.2, 0.4], epochs=4, parallelism=2))
    for name, field in marked_invalid:
        status = wait_for(lambda: (_sweep(kubectl, namespace, name).get("status") or {}).get("phase") == "Invalid"
                          and _sweep(kubectl, namespace, name)["status"], timeout=30, what=f"{name} Invalid")
        assert field in status["message"], (name, status["message"])
        assert not _runs(kubectl, namespace, name)
    wait_for(lambda: (_sweep(kubectl, namespace, "good").get("status") or {}).get("phase") == "Succeeded",
             timeout=60, what="the valid sweep to succeed beside invalid ones")
    assert len(refused_by_server) >= 15 and len(marked_invalid) >= 5


def _pods_of(kubectl, ns, sweep):
    return {p["metadata"]["labels"]["kubesweep.io/run"]: p
            for p in get(kubectl, ns, "pods", "-l", f"kubesweep.io/sweep={sweep}")["items"]}


def test_restart_with_sigkill_loses_nothing_and_duplicates_nothing(kubectl, sim, namespace, operator):
    apply(kubectl, namespace, sim_sweep("rs", sim.pool, QUALITIES, epochs=12, parallelism=3))

    def some_stopped_some_running():
        states = [(r.get("status") or {}).get("state") for r in _runs(kubectl, namespace, "rs").values()]
        return "EarlyStopped" in states and "Running" in states

    wait_for(some_stopped_some_running, timeout=60, interval=0.2, what="a stop while runs are going")
    operator.kill()
    time.sleep(2.0)  # runs keep training while nobody watches
    operator.start()
    wait_for(lambda: (_sweep(kubectl, namespace, "rs").get("status") or {}).get("phase") == "Succeeded",
             timeout=180, what="sweep rs to succeed after the restart\n" + operator.log_tail())

    runs = _runs(kubectl, namespace, "rs")
    jobs = get(kubectl, namespace, "jobs", "-l", "kubesweep.io/sweep=rs")["items"]
    assert sorted(r["spec"]["index"] for r in runs.values()) == list(range(len(QUALITIES))), "no duplicate run"
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(runs), "exactly one Job per run"
    for r in runs.values():
        if r["status"]["state"] == "Succeeded":
            # no iteration lost and none counted twice across the restart
            assert r["status"]["iteration"] == 12 and r["status"]["rowsSeen"] == 12, r["metadata"]["name"]
    stopped = sorted(n for n, r in runs.items() if r["status"]["state"] == "EarlyStopped")
    events = sorted(m.split(":")[0] for m in _events(kubectl, namespace, "RunEarlyStopped"))
    assert events == stopped, "every stopped run announced exactly once: none stopped twice"
    # The same decisions as a replay of the rows in the order they first arrived.
    seen, lines = set(), []
    for line in open(operator.record("rs")):
        obj = __import__("json").loads(line)
        key = (obj["run"], obj.get("epoch"), obj.get("state"))
        if key not in seen:
            seen.add(key)
            lines.append(line)
    cfg = sweep_config.load(_sweep(kubectl, namespace, "rs")).config
    result = replay(cfg, parse_events(lines))
    assert sorted(n for n, r in result["runs"].items() if r["stopped"]) == stopped


def test_push_endpoint_trusts_only_the_pod_bound_token(kubectl, sim, namespace, operator):
    import json
    import urllib.error
    import urllib.request

    apply(kubectl, namespace, sim_sweep("push", sim.pool, [0.5, 0.6], epochs=400, parallelism=2,
                                        extra={"metrics": {"source": "push"}}))
    pods = wait_for(lambda: (p := _pods_of(kubectl, namespace, "push")) and len(p) == 2
                    and all(x["status"].get("phase") == "Running" for x in p.values()) and p,
                    timeout=60, what="two running pods")
    a, b = sorted(pods)

    def token(*extra):
        return kubectl("create", "token", "default", "-n", namespace, "--duration", "10m", *extra).stdout.strip()

    def bound(run, audience="kubesweep"):
        pod = pods[run]["metadata"]
        return token("--audience", audience, "--bound-object-kind", "Pod", "--bound-object-name", pod["name"],
                     "--bound-object-uid", pod["uid"])

    def post(tok, body):
        req = urllib.request.Request(f"http://127.0.0.1:{operator.push_port}/v1/report", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {tok}"} if tok else {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    tok_a = bound(a)
    # The run is the token's pod, whatever the body says: a's token can only report for a.
    status, body = post(tok_a, {"rows": [{"val_loss": 1.0, "run": b}, {"val_loss": 0.9}]})
    assert (status, body["run"], body["accepted"]) == (200, a, 2)
    runs = _runs(kubectl, namespace, "push")
    assert runs[a]["status"]["iteration"] == 2, "rows are durable before the request is answered"
    assert runs[b]["status"].get("iteration", 0) == 0
    # A retried request (same sequence numbers) is counted once; new rows after it count.
    status, body = post(tok_a, {"rows": [{"val_loss": 0.8}], "seq": 1})
    assert (status, body["accepted"]) == (200, 1)
    status, body = post(tok_a, {"rows": [{"val_loss": 0.8}, {"val_loss": 0.7}], "seq": 1})
    assert (status, body["accepted"], body["duplicates"]) == (200, 1, 1)
    status, body = post(tok_a, {"rows": [{"val_loss": 0.7}], "seq": 2})
    assert (status, body["accepted"], body["duplicates"]) == (200, 0, 1)
    run_a = _runs(kubectl, namespace, "push")[a]["status"]
    assert (run_a["iteration"], run_a["pushSeq"]) == (4, 2)
    assert post(None, {"rows": []})[0] == 401
    assert post("not-a-token", {"rows": []})[0] == 401
    assert post(bound(a, audience="some-other-service"), {"rows": []})[0] == 401
    assert post(token("--audience", "kubesweep"), {"rows": []})[0] == 403  # not bound to a pod
    assert post(tok_a, {"rows": "nope"})[0] == 400
    assert operator.metric("kubesweep_push_rejected_total", reason="not_a_pod") == 1
    assert operator.metric("kubesweep_metric_rows_total", sweep="push", source="push") == 4


def test_the_example_manifest_applies_unchanged(kubectl, sim, namespace, operator, root_dir):
    kubectl("apply", "-n", namespace, "-f", str(root_dir / "examples" / "digits" / "sweep.yaml"))
    wait_for(lambda: (_sweep(kubectl, namespace, "digits").get("status") or {}).get("phase") == "Succeeded",
             timeout=240, interval=1, what="the example sweep\n" + operator.log_tail())
    runs = _runs(kubectl, namespace, "digits")
    assert len(runs) == 18
    states = [r["status"]["state"] for r in runs.values()]
    assert states.count("EarlyStopped") >= 6 and "Succeeded" in states and "Failed" not in states
    assert {r["status"]["decision"]["band"] for r in runs.values() if r["status"]["state"] == "EarlyStopped"} <= {2, 6}
    pod_spec = get(kubectl, namespace, "jobs", next(iter(runs)))["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod_spec["containers"][0]["command"][:3] == ["/usr/bin/env", "python", "train.py"]
    status = _sweep(kubectl, namespace, "digits")["status"]
    assert status["bands"] == [2, 6] and status["gpuSecondsSaved"] > 0
