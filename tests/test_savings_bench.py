"""The savings benchmark runs end to end in its smoke size (`--quick`: the example sweep of 6 runs, for
real, with and without early termination, and small synthetic sweeps), and the numbers it reports
add up. No savings figure itself is checked: those depend on the curves and, for the example, on
process timing."""
import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_savings_bench_quick(tmp_path, root):
    out = tmp_path / "savings.json"
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "savings.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=230, cwd=root,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "CHECK FAILED" not in proc.stdout
    for heading in ("### Example sweep", "### Synthetic sweeps", "| config | bands | T | curves |"):
        assert heading in proc.stdout
    result = json.loads(out.read_text())
    assert result["consistent"] is True and result["failures"] == []

    ex = result["example"]
    assert ex["bands"] == [2, 6] and ex["full"] == ex["runs"] * ex["epochs"]
    assert 0 < ex["plan_estimate"] <= ex["full"]
    assert ex["per_seed"]
    for s in ex["per_seed"]:
        assert s["same_parameters"] and s["stopped_values_are_prefixes"]
        assert s["stopped"] + s["succeeded"] + s["failed"] == ex["runs"]
        # every epoch is trained, saved, or (a NaN value in a run nobody stopped) neither
        assert s["iterations_trained"] + s["iterations_saved"] + s["non_finite_values_in_unstopped_runs"] == ex["full"]
        assert s["iterations_trained_without_early_termination"] + s["non_finite_values"] >= s["iterations_trained"]
        assert s["best_survived"] == (s["regret"] == 0)
        assert s["best_survived"] == (s["best_lost_at_band"] is None)
        assert s["best_final"] == min(v for v in s["finals"].values() if v == v)  # NaN != NaN
        assert s["surviving_best_rank"] >= 1 and (s["surviving_best_rank"] == 1) == s["best_survived"]

    rows = result["synthetic"]
    assert {r["config"] for r in rows} == {"a", "b", "c"}
    assert {r["curves"] for r in rows} == set(result["settings"]["families_tied_share"])
    assert result["parallelism"]
    for r in result["parallelism"]:  # summaries only
        assert r["full"] == r["runs"] * r["epochs"] and r["parallelism"] != result["settings"]["parallelism"]
        assert r["iterations_trained_min"] <= r["iterations_trained_median"] <= r["iterations_trained_max"] <= r["full"]
        assert 0 <= r["best_survived_share"] <= 1
    for r in rows:
        n, t, full = r["runs"], r["epochs"], r["full"]
        assert full == n * t
        assert 0 < r["plan_estimate"] <= full
        cols = r["per_seed"]
        assert len(cols["seed"]) == r["seeds"]
        for i in range(r["seeds"]):
            trained, saved = cols["iterations_trained"][i], cols["iterations_saved"][i]
            assert trained + saved == full
            assert abs(cols["gpu_seconds_used"][i] - cols["gpu_seconds_in_stopped_epochs"][i]
                       + cols["gpu_seconds_saved_reported"][i] - full) < 0.01
            assert trained <= cols["gpu_seconds_used"][i] <= trained + cols["stopped"][i]  # < 1 epoch lost per stop
            assert cols["stopped"][i] + cols["succeeded"][i] == n
            assert cols["survivors"][i] == cols["succeeded"][i] + cols["stopped_at_last_iteration"][i]
            assert cols["wall_seconds"][i] <= cols["wall_seconds_without_early_termination"][i] + 1e-6
            assert cols["best_survived"][i] == (cols["regret_relative"][i] == 0) == (cols["surviving_best_rank"][i] == 1)
            assert (cols["best_lost_at_band"][i] is None) == cols["best_survived"][i]
            assert cols["best_lost_at_band"][i] in (None, *r["bands"])
            if not cols["best_survived"][i]:
                assert cols["best_lost_at_band"][i] <= cols["best_lost_at_iteration"][i] < t
            assert cols["late_stops"][i] <= cols["stopped"][i]
            assert cols["iterations_past_band_in_late_stops"][i] >= cols["late_stops"][i]
            assert cols["same_budget_runs"][i] == int(cols["gpu_seconds_used"][i] // t)
        assert r["iterations_trained_min"] <= r["iterations_trained_median"] <= r["iterations_trained_max"]
        assert 0 <= r["best_survived_share"] <= 1
        assert sum(r["best_lost_at_band"].values()) == round((1 - r["best_survived_share"]) * r["seeds"])
        if r["config"] == "a":
            assert any("min_iter: 4 is ignored" in w for w in r["config_warnings"])
        if r["config"] != "c":  # only (c) has a band at the last epoch
            assert sum(cols["stopped_at_last_iteration"]) == 0
