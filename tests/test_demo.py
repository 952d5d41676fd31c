"""The README's main job: `kubesweep run` on the shipped example trains real models and stops weak runs."""
import json
import subprocess
import sys

from kubesweep.engine import config
from kubesweep.engine.replay import parse_events, replay

SWEEP = "examples/digits/sweep.yaml"


def test_example_sweep_stops_weak_runs_and_keeps_a_good_one(root, tmp_path):
    work = tmp_path / "work"
    out = subprocess.run([sys.executable, "-m", "kubesweep.cli", "run", SWEEP, "--workdir", str(work)],
                         cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads((work / "summary.json").read_text())
    assert summary["phase"] == "Succeeded"
    runs = summary["runs"]
    assert sum(runs.values()) == 18 and runs["Failed"] == 0
    assert runs["EarlyStopped"] >= 6 and runs["Succeeded"] >= 1
    assert {s["band"] for s in summary["stops"]} <= {2, 6}
    # The best run really learned: digits validation log loss well below chance (ln 10 = 2.3).
    assert summary["best"]["value"] < 0.3
    assert 1e-3 < summary["best"]["parameters"]["lr"] < 1.0
    assert summary["iterations_saved"] > 100
    assert summary["iterations_trained"] + summary["iterations_saved"] == 360
    assert "best run (ranked by each run's last value" in out.stdout and "iterations saved by early termination" in out.stdout
    # Every live decision is reproduced from the replay file.
    result = replay(config.load_file(str(root / SWEEP)).config, parse_events(open(work / "events.jsonl")))
    assert {n for n, r in result["runs"].items() if r["stopped"]} == {s["run"] for s in summary["stops"]}
