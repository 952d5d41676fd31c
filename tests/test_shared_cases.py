"""Every reported scenario in tests/cases (copied from the shared cases) through the engine and
through `kubesweep replay --json`, with exactly the expected stops."""
import json
import pathlib
import subprocess
import sys

import pytest
import yaml

from kubesweep.engine import config
from kubesweep.engine.replay import event_from_object, replay

CASES = pathlib.Path(__file__).parent / "cases"
HYPERBAND = sorted((CASES / "hyperband").glob("*.yaml"))
INVALID = sorted((CASES / "invalid").glob("*.yaml"))


def _case(path):
    return config.load_yaml(path.read_text())


def _check(result, case):
    exp = case["expected"]
    stopped = {name: r["stopped"] for name, r in result["runs"].items() if r["stopped"]}
    assert set(stopped) == set(exp["stopped"]), f"stopped runs differ: {sorted(stopped)} vs {sorted(exp['stopped'])}"
    for name, want in exp["stopped"].items():
        assert stopped[name]["iteration"] == want["iteration"], name
        assert stopped[name]["after_event"] == want["after_event"], name
        assert result["runs"][name]["state"] == "EarlyStopped"
    for name in exp["not_stopped"]:
        assert result["runs"][name]["stopped"] is None
        assert result["runs"][name]["state"] != "EarlyStopped"


@pytest.mark.parametrize("path", HYPERBAND, ids=lambda p: p.stem)
def test_engine_decides_like_wandb(path):
    case = _case(path)
    loaded = config.load(case["sweep"])
    rule = loaded.config.hyperband
    assert rule.bands_up_to(1000) == case["expected"]["bands_up_to_1000"]
    events = [event_from_object(e, f"event {i}") for i, e in enumerate(case["events"])]
    _check(replay(loaded.config, events), case)


@pytest.mark.parametrize("path", HYPERBAND, ids=lambda p: p.stem)
def test_replay_cli_json(path, tmp_path):
    case = _case(path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(case["sweep"]))
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in case["events"]))
    out = subprocess.run([sys.executable, "-m", "kubesweep.cli", "replay", str(sweep), str(events), "--json"],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    _check(result, case)
    bands = result["bands"]
    assert bands == [b for b in case["expected"]["bands_up_to_1000"] if b <= bands[-1]]
    for name, r in result["runs"].items():
        assert set(r) >= {"state", "iterations", "stopped"}
        if r["stopped"]:
            assert set(r["stopped"]) >= {"after_event", "iteration", "band", "value", "threshold"}


def test_metric_never_logged_is_a_warning_naming_what_was_logged(tmp_path):
    case = _case(CASES / "hyperband" / "05-metric-never-logged.yaml")
    events = [event_from_object(e, "e") for e in case["events"]]
    result = replay(config.load(case["sweep"]).config, events)
    (warning,) = result["warnings"]
    assert "'test_acc_avg'" in warning and "'test_acc_avg '" in warning and "never reported" in warning


def test_min_iter_beside_max_iter_warns():
    case = _case(CASES / "hyperband" / "01-min-and-max-iter.yaml")
    warnings = config.load(case["sweep"]).warnings
    assert any(w.startswith("early_terminate.min_iter") and "ignored" in w and "[2, 6]" in w for w in warnings)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_configs_are_refused_naming_the_field(path):
    case = _case(path)
    field = case["expected"]["message_names_field"]
    with pytest.raises(config.ConfigError) as err:
        config.load(case["sweep"])
    fields = [p.field for p in err.value.problems]
    assert field in fields, f"expected a problem on {field}, got {err.value.problems}"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_validate_cli_exits_non_zero_naming_the_field(path, tmp_path):
    case = _case(path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(case["sweep"]))
    out = subprocess.run([sys.executable, "-m", "kubesweep.cli", "validate", str(sweep)], capture_output=True, text=True)
    assert out.returncode == 2
    assert f"error: {case['expected']['message_names_field']}:" in out.stderr
