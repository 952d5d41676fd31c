from kubesweep.engine import config
from kubesweep.engine.bands import HyperbandRule
from kubesweep.engine.rows import metric_value, parse_line
from kubesweep.engine.savings import estimate_budget, planned_iterations, run_usage


def test_key_value_and_json_lines_are_rows():
    assert parse_line("epoch=3 val_loss=0.41, acc=0.9") == {"epoch": 3, "val_loss": 0.41, "acc": 0.9}
    assert parse_line('{"epoch": 1, "loss": NaN}')["epoch"] == 1
    assert parse_line("Loading data from /tmp ...") is None
    assert parse_line('name="my run" loss=1e-3') == {"name": "my run", "loss": 0.001}


def test_only_finite_values_are_iterations():
    assert metric_value({"loss": "nan"}, "loss") is None
    assert metric_value({"loss": float("inf")}, "loss") is None
    assert metric_value({"loss": None}, "loss") is None
    assert metric_value({"loss": "0.5"}, "loss") == 0.5
    assert metric_value({"other": 1}, "loss") is None


def test_savings_use_the_runs_own_pace_and_gpus():
    u = run_usage(iterations=4, seconds=40.0, gpus=2, planned=20, early_stopped=True)
    assert (u.iterations_saved, u.gpu_seconds_used, u.gpu_seconds_saved) == (16, 80.0, 320.0)
    assert run_usage(20, 200.0, 1, 20, early_stopped=False).gpu_seconds_saved == 0


def test_planned_iterations_sources_in_order():
    base = {"method": "random", "parameters": {"lr": {"min": 0.1, "max": 1.0}}}
    c = config.load({**base, "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2}, "metric": {"name": "l"}}).config
    assert planned_iterations(c, {"epochs": 12}) == (12, "parameter epochs")
    assert planned_iterations(c, {}) == (27, "early_terminate.max_iter")
    c2 = config.load({**base, "iterations_per_run": 9}).config
    assert planned_iterations(c2, {"epochs": 12}) == (9, "iterations_per_run")


def test_budget_estimate_keeps_int_n_over_eta_plus_one_per_band():
    est = estimate_budget(HyperbandRule(max_iter=20, s=2, eta=3.0), runs=9, iterations_per_run=20)
    # 9 runs to band 2, int(9/3)+1 = 4 to band 6, int(4/3)+1 = 2 to the end
    assert est.survivors_per_band == [(2, 4), (6, 2)]
    assert est.with_early_termination == 9 * 2 + 4 * 4 + 2 * 14
    assert est.without_early_termination == 180
