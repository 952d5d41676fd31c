"""Which parameters the next run gets: grid, random or bayes.

Every sampler is a pure function of (sweep seed, run index, results so far), so a restarted
operator or a retried request proposes the same parameters for the same run index.
Bayes uses Optuna's TPE sampler; distributions TPE cannot model (normal, log_normal, beta and
their q_ forms) are drawn at random, as `kubesweep plan` says.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .config import SweepConfig
from .params import Param, flatten, grid_axis, sample

BAYES_MODELLED = {
    "int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values", "q_log_uniform",
    "q_log_uniform_values", "inv_log_uniform_values", "categorical",
}


@dataclass(frozen=True)
class Result:
    """A run's outcome as the bayes sampler sees it."""

    params: Mapping[str, Any]
    value: float | None  # its last value of the metric
    state: str  # tracker state: Succeeded, EarlyStopped, Failed, Running
    iteration: int = 0


def _rng(seed: str, index: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _nest(params: tuple[Param, ...], leaf_values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in params:
        out[p.name] = _nest(p.children, leaf_values) if p.distribution == "nested" else leaf_values[p.path]
    return out


def _leaf_value(params: Mapping[str, Any], leaf: Param) -> Any:
    # path "parameters.a.parameters.b" -> params["a"]["b"]
    names = leaf.path.split(".")[1::2]
    v: Any = params
    for n in names:
        v = v[n]
    return v


class GridSearch:
    def __init__(self, config: SweepConfig):
        self.params = config.parameters
        self.leaves = flatten(config.parameters)
        self.axes = [grid_axis(p) for p in self.leaves]
        self.size = math.prod(len(a) for a in self.axes)

    def suggest(self, index: int, results: Sequence[Result] = ()) -> dict[str, Any] | None:
        """The index-th point of the product (the last parameter varies fastest), None past the end."""
        if index >= self.size:
            return None
        chosen, rest = {}, index
        for leaf, axis in zip(reversed(self.leaves), reversed(self.axes)):
            rest, i = divmod(rest, len(axis))
            chosen[leaf.path] = axis[i]
        return _nest(self.params, chosen)


class RandomSearch:
    def __init__(self, config: SweepConfig, seed: str):
        self.params, self.seed = config.parameters, seed

    def suggest(self, index: int, results: Sequence[Result] = ()) -> dict[str, Any]:
        rng = _rng(self.seed, index)
        return {p.name: sample(p, rng) for p in self.params}


class BayesSearch:
    def __init__(self, config: SweepConfig, seed: str):
        import optuna  # heavy import, only for bayes sweeps

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.params, self.seed = config.parameters, seed
        self.leaves = flatten(config.parameters)
        self.direction = "maximize" if config.metric and config.metric.maximize else "minimize"
        self.dists = {p.path: self._distribution(p) for p in self.leaves if p.distribution in BAYES_MODELLED}

    def _distribution(self, p: Param) -> Any:
        d, s, dist = p.distribution, p.spec, self._optuna.distributions
        if d == "categorical":
            return dist.CategoricalDistribution(list(range(len(s["values"]))))
        if d == "int_uniform":
            return dist.IntDistribution(int(s["min"]), int(s["max"]))
        if d in ("uniform", "q_uniform"):
            return dist.FloatDistribution(s["min"], s["max"])
        if d in ("log_uniform", "q_log_uniform"):
            return dist.FloatDistribution(math.exp(s["min"]), math.exp(s["max"]), log=True)
        return dist.FloatDistribution(s["min"], s["max"], log=True)  # the *_values forms

    def _to_internal(self, p: Param, value: Any) -> Any:
        if p.distribution == "categorical":
            return p.spec["values"].index(value)
        return value

    def _from_internal(self, p: Param, value: Any) -> Any:
        d, s = p.distribution, p.spec
        if d == "categorical":
            return s["values"][value]
        if d.startswith("q_"):
            v = round(value / s["q"]) * s["q"]
            return int(v) if float(s["q"]).is_integer() else v
        return value

    def suggest(self, index: int, results: Sequence[Result] = ()) -> dict[str, Any]:
        optuna = self._optuna
        seed = int.from_bytes(hashlib.sha256(f"{self.seed}/{index}".encode()).digest()[:4], "big")
        study = optuna.create_study(direction=self.direction, sampler=optuna.samplers.TPESampler(seed=seed))
        for r in results:
            trial = self._trial(r)
            if trial is not None:
                study.add_trial(trial)
        ask = study.ask(self.dists)
        rng = _rng(self.seed, index)
        chosen = {}
        for p in self.leaves:
            chosen[p.path] = self._from_internal(p, ask.params[p.path]) if p.path in self.dists else sample(p, rng)
        return _nest(self.params, chosen)

    def _trial(self, r: Result) -> Any:
        optuna = self._optuna
        try:
            internal = {path: self._to_internal(p, _leaf_value(r.params, p)) for p in self.leaves
                        if (path := p.path) in self.dists}
        except (KeyError, ValueError, TypeError):
            return None  # parameters from an older spec: not comparable
        if r.value is None or not math.isfinite(r.value):
            return None
        if r.state == "Succeeded":
            state, kwargs = optuna.trial.TrialState.COMPLETE, {"value": r.value}
        elif r.state == "EarlyStopped":
            state, kwargs = optuna.trial.TrialState.PRUNED, {"intermediate_values": {max(r.iteration, 1): r.value}}
        else:
            return None
        return optuna.trial.create_trial(params=internal, distributions=self.dists, state=state, **kwargs)


def make_sampler(config: SweepConfig, seed: str) -> GridSearch | RandomSearch | BayesSearch:
    if config.method == "grid":
        return GridSearch(config)
    if config.method == "bayes":
        return BayesSearch(config, seed)
    return RandomSearch(config, seed)


def sweep_size(config: SweepConfig) -> int | None:
    """How many runs the sweep will start at most: run_cap, the grid size, or None (unbounded)."""
    grid = GridSearch(config).size if config.method == "grid" else None
    caps = [c for c in (config.run_cap, grid) if c is not None]
    return min(caps) if caps else None
