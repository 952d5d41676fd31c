"""`kubesweep plan` output and the samplers."""
import json
import subprocess
import sys

import yaml

from kubesweep.engine import config
from kubesweep.engine.search import Result, make_sampler, sweep_size

BASE = {"method": "random", "metric": {"name": "val_loss"}, "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1}}}


def _plan(tmp_path, doc, *args):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    out = subprocess.run([sys.executable, "-m", "kubesweep.cli", "plan", str(p), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_plan_min_and_max_iter_shows_bands_2_6_and_warns(tmp_path):
    doc = {**BASE, "early_terminate": {"type": "hyperband", "min_iter": 4, "max_iter": 20, "s": 2, "eta": 3}}
    text = _plan(tmp_path, doc, "--runs", "30")
    assert "bands: 2, 6 " in text
    assert "warning: early_terminate.min_iter: 4 is ignored because max_iter is set" in text
    assert "max_iter 20 / 3^2 = 2.222 -> 2 (kept)" in text
    p = json.loads(_plan(tmp_path, doc, "--runs", "30", "--json"))
    assert p["early_terminate"]["bands"] == [2, 6]
    b = p["budget"]
    assert (b["iterations_per_run"], b["iterations_per_run_source"]) == (20, "early_terminate.max_iter")
    assert b["without_early_termination"] == 600 and b["with_early_termination_estimate"] < 600


def test_plan_min_iter_alone_shows_unbounded_bands(tmp_path):
    text = _plan(tmp_path, {**BASE, "early_terminate": {"type": "hyperband", "min_iter": 4, "eta": 3}}, "--iterations", "40")
    assert "bands: 4, 12, 36, 108, 324, ..." in text


def test_plan_commands_show_the_exact_argv(tmp_path):
    doc = {**BASE, "program": "train.py", "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]}
    p = json.loads(_plan(tmp_path, doc, "--commands", "2", "--json"))
    first = p["commands"][0]
    assert first["argv"][:3] == ["/usr/bin/env", "python", "train.py"]
    assert first["argv"][3] == f"lr={first['parameters']['lr']}"
    assert len(p["commands"]) == 2 and p["commands"][0] != p["commands"][1]


def test_random_is_deterministic_per_seed_and_index():
    c = config.load(BASE).config
    a, b = make_sampler(c, "uid-1"), make_sampler(c, "uid-1")
    assert [a.suggest(i) for i in range(5)] == [b.suggest(i) for i in range(5)]
    assert make_sampler(c, "uid-2").suggest(0) != a.suggest(0)
    assert all(1e-4 <= a.suggest(i)["lr"] <= 0.1 for i in range(50))


def test_grid_enumerates_values_int_and_q_uniform_then_ends():
    c = config.load({"method": "grid", "parameters": {"a": {"values": ["x", "y"]}, "b": {"min": 1, "max": 3},
                                                      "c": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.5}}}).config
    g = make_sampler(c, "s")
    points = [g.suggest(i) for i in range(12)]
    assert sweep_size(c) == 18 and None not in points
    assert g.suggest(18) is None
    assert {p["c"] for p in points} <= {0.0, 0.5, 1.0}


def test_bayes_uses_results_to_propose_near_the_good_region():
    doc = {"method": "bayes", "metric": {"name": "loss", "goal": "minimize"},
           "parameters": {"x": {"distribution": "uniform", "min": 0.0, "max": 10.0}}}
    c = config.load(doc).config
    s = make_sampler(c, "seed")
    results = []
    for i in range(30):
        p = s.suggest(i, results)
        assert 0.0 <= p["x"] <= 10.0
        results.append(Result(p, (p["x"] - 7.0) ** 2, "Succeeded", 5))
    late = [r.params["x"] for r in results[20:]]
    assert sum(abs(x - 7.0) < 2.0 for x in late) >= 6, late  # TPE concentrates near the optimum
    assert s.suggest(30, results) == make_sampler(c, "seed").suggest(30, results), "same inputs, same proposal"
