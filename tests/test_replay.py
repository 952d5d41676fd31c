"""The EVENTS format's edges: a last row with its end, rows after an end, bad states, no events."""
import pytest

from kubesweep.engine import config
from kubesweep.engine.problems import ConfigError
from kubesweep.engine.replay import parse_events, replay

CFG = config.load({"method": "random", "metric": {"name": "loss"}, "parameters": {"lr": {"min": 0.1, "max": 1.0}},
                   "early_terminate": {"type": "hyperband", "min_iter": 1}}).config


def test_a_row_with_a_state_is_the_last_row_then_the_end():
    result = replay(CFG, parse_events(['{"run": "a", "loss": 0.5, "state": "finished"}']))
    assert result["runs"]["a"]["state"] == "Succeeded" and result["runs"]["a"]["iterations"] == 1


def test_rows_after_an_end_are_ignored_and_said_so():
    result = replay(CFG, parse_events(['{"run": "a", "loss": 0.5}', '{"run": "a", "state": "crashed"}',
                                       '{"run": "a", "loss": 0.1}']))
    assert result["runs"]["a"]["iterations"] == 1 and result["runs"]["a"]["state"] == "Failed"
    assert any("came after its end" in w for w in result["warnings"])


def test_bad_lines_name_the_line():
    with pytest.raises(ConfigError) as err:
        parse_events(['{"run": "a", "loss": 1}', '{"run": "a", "state": null}'], source="ev.jsonl")
    assert err.value.problems[0].field == "ev.jsonl line 2.state"
    with pytest.raises(ConfigError) as err:
        parse_events(["not json"], source="ev.jsonl")
    assert err.value.problems[0].field == "ev.jsonl line 1"


def test_no_events_is_a_warning():
    assert "the events file holds no events" in replay(CFG, [])["warnings"]
