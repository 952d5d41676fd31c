"""The incremental engine decides exactly what the published rule (recomputed from scratch after
every event) decides, on random interleaved histories with ends, ties, NaNs and both goals."""
import math
import random

import pytest

from kubesweep.engine.bands import HyperbandRule
from kubesweep.engine.hyperband import Hyperband
from kubesweep.engine.reference import runs_to_stop

RULES = [
    HyperbandRule(min_iter=1, eta=2.0),
    HyperbandRule(min_iter=2, eta=3.0, strict=False),
    HyperbandRule(max_iter=12, s=3, eta=2.0),
    HyperbandRule(max_iter=20, s=2, eta=3.0, strict=False),
    HyperbandRule(min_iter=3, eta=1.5),
]


def _simulate(rule, maximize, seed, n_runs=12, n_events=400):
    rng = random.Random(seed)
    engine = Hyperband(rule, "m", maximize)
    histories, running, ended = {}, set(), set()
    for step in range(n_events):
        run = f"r{rng.randrange(n_runs)}"
        if run in ended:
            continue
        if rng.random() < 0.03:
            engine.end(run)
            running.discard(run)
            ended.add(run)
            continue
        # coarse values make ties common; some NaNs are not iterations
        value = float("nan") if rng.random() < 0.05 else rng.randrange(10) / 10
        running.add(run)
        histories.setdefault(run, [])
        got = {}
        if math.isfinite(value):
            histories[run].append(value)
            got = {d.run: (d.band, d.value, d.threshold) for d in engine.report(run, value)}
        want = runs_to_stop(rule, maximize, histories, running)
        assert got == want, f"step {step}: engine {got} vs rule {want}"
        for r in want:
            running.discard(r)
            ended.add(r)


@pytest.mark.parametrize("rule", RULES, ids=repr)
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_incremental_matches_published_rule(rule, maximize, seed):
    _simulate(rule, maximize, seed)


def test_restore_then_evaluate_matches_uninterrupted_engine():
    rule = HyperbandRule(min_iter=2, eta=3.0)
    live = Hyperband(rule, "loss", False)
    for run, v in [("a", 0.5), ("b", 0.6), ("a", 0.4), ("b", 0.7)]:
        live.report(run, v)
    restored = Hyperband(rule, "loss", False)
    for run in ("a", "b"):
        restored.restore(run, live.checkpoint(run))
    assert restored.evaluate_all() == []  # b was already stopped live; not stopped twice
    assert not restored.checkpoint("b").running
    # c arrives after the restart: both engines must stop it the same way
    assert [d.run for d in live.report("c", 0.9)] == [d.run for d in restored.report("c", 0.9)] == []
    assert [d.run for d in live.report("c", 0.9)] == [d.run for d in restored.report("c", 0.9)] == ["c"]


def test_decision_carries_band_value_threshold_and_count():
    rule = HyperbandRule(min_iter=2, eta=3.0)
    hb = Hyperband(rule, "loss", False)
    for run, v in [("a", 1.0), ("b", 1.0), ("a", 0.5)]:
        hb.report(run, v)
    (d,) = hb.report("b", 0.8)
    assert (d.run, d.band, d.iteration, d.value, d.threshold, d.runs_at_band) == ("b", 2, 2, 0.8, 0.5, 2)
    assert d.message() == ("loss at iteration 2 = 0.8 is above the band-2 threshold 0.5 "
                           "(the 1st best of 2 runs' values at iteration 2, eta 3); stopped at iteration 2")
