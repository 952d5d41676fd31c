"""Validation messages, warnings and W&B defaults beyond the shared invalid cases."""
import pytest

from kubesweep.engine import config
from kubesweep.engine.config import ConfigError

BASE = {"method": "random", "metric": {"name": "loss"}, "parameters": {"lr": {"min": 0.1, "max": 1.0}}}


def problems(doc):
    with pytest.raises(ConfigError) as err:
        config.load(doc)
    return {p.field: p.message for p in err.value.problems}


def test_defaults_are_wandbs():
    c = config.load({**BASE, "early_terminate": {"type": "hyperband", "min_iter": 3}}).config
    assert (c.hyperband.eta, c.hyperband.strict, c.metric.goal) == (3.0, True, "minimize")
    assert (c.parallelism, c.max_failed_runs, c.stop_grace_period_seconds, c.metrics_source) == (1, 5, 30, "logs")


def test_manifest_spec_is_unwrapped_and_named():
    doc = {"apiVersion": "kubesweep.io/v1alpha1", "kind": "Sweep", "metadata": {"name": "digits"}, "spec": BASE}
    assert config.load(doc).config.name == "digits"


def test_typo_suggests_the_right_key():
    assert "did you mean 'early_terminate'" in problems({**BASE, "early_terminte": {}})["early_terminte"]
    assert "did you mean 'min_iter'" in problems({**BASE, "early_terminate": {"type": "hyperband", "min_itr": 3}})["early_terminate.min_itr"]


def test_every_problem_is_reported_at_once():
    found = problems({"method": "evolution", "metric": {"name": "loss", "goal": "max"}, "parameters": {"x": {"values": []}}, "run_cap": 0})
    assert {"method", "metric.goal", "parameters.x.values", "run_cap"} <= set(found)


def test_yaml_exponent_floats_are_numbers_like_kubectl_reads_them():
    doc = config.load_yaml("method: random\nparameters:\n  lr: {distribution: log_uniform_values, min: 1e-5, max: 1e-1}\n")
    lr = config.load(doc).config.parameters[0]
    assert lr.spec["min"] == 1e-5


def test_string_bound_gets_a_hint():
    msg = problems({**BASE, "parameters": {"lr": {"distribution": "uniform", "min": "small", "max": 1}}})["parameters.lr.min"]
    assert "must be a number" in msg


def test_probabilities_must_match_values():
    assert "add up to 1" in problems({**BASE, "parameters": {"o": {"values": ["a", "b"], "probabilities": [0.5, 0.6]}}})["parameters.o.probabilities"]


def test_nested_parameter_problems_name_the_full_path():
    found = problems({**BASE, "parameters": {"opt": {"parameters": {"lr": {"distribution": "uniform", "min": 2, "max": 1}}}}})
    assert "parameters.opt.parameters.lr" in found


def test_fixed_epochs_smaller_than_last_band_warns():
    doc = {**BASE, "command": ["python", "train.py", "--epochs", "5"],
           "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2}}
    warnings = config.load(doc).warnings
    assert any(w.startswith("command[2]") and "band 9" in w for w in warnings)


def test_fixed_epochs_below_first_band_means_no_early_termination():
    doc = {**BASE, "command": ["python", "train.py", "--epochs=2"], "early_terminate": {"type": "hyperband", "min_iter": 3}}
    assert any("nothing will be stopped early" in w for w in config.load(doc).warnings)


def test_s_without_max_iter_warns():
    doc = {**BASE, "early_terminate": {"type": "hyperband", "min_iter": 3, "s": 2}}
    assert any(w.startswith("early_terminate.s") for w in config.load(doc).warnings)


def test_kubesweep_fields_are_validated():
    found = problems({**BASE, "parallelism": 0, "metrics": {"source": "tensorboard"}, "stop_grace_period_seconds": -1})
    assert {"parallelism", "metrics.source", "stop_grace_period_seconds"} <= set(found)
