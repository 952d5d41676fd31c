"""`kubesweep run` on real local processes: stops at bands, replay agrees, failures are contained."""
import json
import subprocess
import sys
import time

import yaml

from kubesweep.engine import config
from kubesweep.engine.replay import parse_events, replay

SCRIPT = "curve.py"


def _sweep(tmp_path, **over):
    (tmp_path / SCRIPT).write_text((__import__("pathlib").Path(__file__).parent / "data" / SCRIPT).read_text())
    doc = {
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "program": SCRIPT,
        "parameters": {"quality": {"values": [1.0, 5.0, 2.0, 9.0, 3.0, 8.0]}, "epochs": {"value": 8}},
        "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 3},
        "parallelism": 3,
        "stop_grace_period_seconds": 2,
    }
    doc.update(over)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(path, tmp_path, *extra, timeout=120):
    work = tmp_path / "work"
    out = subprocess.run([sys.executable, "-m", "kubesweep.cli", "run", str(path), "--workdir", str(work), *extra],
                         capture_output=True, text=True, timeout=timeout)
    summary = json.loads((work / "summary.json").read_text())
    return out, summary, work


def test_run_stops_weak_runs_keeps_the_best_and_replays_identically(tmp_path):
    path = _sweep(tmp_path)
    out, summary, work = _run(path, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert summary["phase"] == "Succeeded"
    runs = summary["runs"]
    assert runs["Succeeded"] + runs["EarlyStopped"] == 6 and runs["Failed"] == 0
    assert runs["EarlyStopped"] >= 2
    assert summary["best"]["parameters"]["quality"] == 1.0  # the best run survived
    assert summary["iterations_saved"] > 0
    assert summary["iterations_trained"] + summary["iterations_saved"] == summary["iterations_without_early_termination"]
    assert "EARLY-STOPPED" in out.stdout and "best run (ranked by each run's last value" in out.stdout
    # The replay file reproduces every stop decision.
    events = parse_events(open(work / "events.jsonl"))
    replayed = replay(config.load_file(str(path)).config, events)
    stopped_live = {s["run"]: (s["band"], s["value"]) for s in summary["stops"]}
    stopped_replay = {n: (r["stopped"]["band"], r["stopped"]["value"]) for n, r in replayed["runs"].items() if r["stopped"]}
    assert stopped_live == stopped_replay


def test_stopped_run_that_ignores_sigterm_is_killed_after_grace(tmp_path):
    path = _sweep(tmp_path, parameters={
        "quality": {"values": [1.0, 9.0]}, "epochs": {"value": 200}, "ignore_sigterm": {"value": True}},
        parallelism=2, stop_grace_period_seconds=1)
    t0 = time.monotonic()
    out, summary, _ = _run(path, tmp_path, "--run-cap", "2")
    # quality 9 is stopped at band 2; quality 1 trains 200 epochs (10 s); the stopped one must not hang
    assert summary["runs"]["EarlyStopped"] == 1
    stopped = summary["stops"][0]
    assert stopped["band"] == 2
    assert time.monotonic() - t0 < 60


def test_broken_program_exhausts_the_failure_budget_instead_of_looping(tmp_path):
    path = _sweep(tmp_path, method="random", parameters={"quality": {"min": 1.0, "max": 2.0}, "fail_at": {"value": 1}},
                  max_failed_runs=2, parallelism=1)
    del_cap = yaml.safe_load(path.read_text())
    del_cap.pop("run_cap", None)
    path.write_text(yaml.safe_dump(del_cap))
    out, summary, _ = _run(path, tmp_path)
    assert out.returncode == 1
    assert summary["phase"] == "Failed"
    assert summary["runs"]["Failed"] == 3  # more than max_failed_runs 2, then no new run
    assert "FailureBudgetExceeded" in summary["reason"]


def test_ctrl_c_stops_every_run_and_reports_them_interrupted_not_failed(tmp_path):
    import signal

    path = _sweep(tmp_path, parameters={"quality": {"values": [1.0, 1.1, 1.2]}, "epochs": {"value": 400}},
                  early_terminate={"type": "hyperband", "min_iter": 300})
    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, "-m", "kubesweep.cli", "run", str(path), "--workdir", str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (work / "events.jsonl").exists() or \
            not (work / "events.jsonl").read_text().count("\n") >= 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, "an interruption is not a failure: exit 130, as after SIGINT"
    summary = json.loads((work / "summary.json").read_text())
    assert summary["phase"] == "Interrupted"
    assert summary["runs"]["Interrupted"] == 3 and summary["runs"]["Failed"] == 0
    assert '"state"' not in (work / "events.jsonl").read_text(), "no end is recorded for an interrupted run"
    ps = subprocess.run(["pgrep", "-f", str(tmp_path / SCRIPT)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "no training process outlives kubesweep"


def test_a_failed_run_says_why_and_where_its_log_is(tmp_path):
    path = _sweep(tmp_path, program="missing.py", parallelism=1, max_failed_runs=0)
    out, summary, work = _run(path, tmp_path)
    (name, why), = summary["failures"].items()
    assert "exit code 2" in why and "missing.py" in why and str(work / name / "output.log") in why
    assert f"failed {name}:" in out.stdout


def test_a_sweep_whose_every_run_failed_is_failed_not_succeeded(tmp_path):
    path = _sweep(tmp_path, program="missing.py", parallelism=2, max_failed_runs=5,
                  parameters={"quality": {"values": [1.0, 2.0]}})
    out, summary, _ = _run(path, tmp_path)
    assert out.returncode == 1
    assert summary["phase"] == "Failed" and summary["reason"].startswith("AllRunsFailed")
