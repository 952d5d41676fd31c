"""W&B parameter specs: parsing, validation, random sampling and grid enumeration."""
from __future__ import annotations

import difflib
import math
import random
from dataclasses import dataclass
from typing import Any

from .problems import Problem

# distribution -> (required keys, optional keys with W&B defaults)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "constant": (("value",), {}),
    "categorical": (("values",), {"probabilities": None}),
    "int_uniform": (("min", "max"), {}),
    "uniform": (("min", "max"), {}),
    "q_uniform": (("min", "max"), {"q": 1.0}),
    "log_uniform": (("min", "max"), {}),
    "log_uniform_values": (("min", "max"), {}),
    "q_log_uniform": (("min", "max"), {"q": 1.0}),
    "q_log_uniform_values": (("min", "max"), {"q": 1.0}),
    "inv_log_uniform": (("min", "max"), {}),
    "inv_log_uniform_values": (("min", "max"), {}),
    "normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "log_normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_log_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "beta": ((), {"a": 1.0, "b": 1.0}),
    "q_beta": ((), {"a": 1.0, "b": 1.0, "q": 1.0}),
}
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
_SPEC_KEYS = {"distribution", "value", "values", "probabilities", "min", "max", "mu", "sigma", "q", "a", "b", "parameters"}
_POSITIVE_BOUNDS = ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")


@dataclass(frozen=True)
class Param:
    """One parameter: a distribution with its settings, or a group of nested parameters."""

    name: str
    path: str  # "parameters.optimizer.parameters.lr"
    distribution: str  # a DISTRIBUTIONS key, or "nested"
    spec: dict[str, Any]  # settings with W&B defaults filled in
    children: tuple["Param", ...] = ()


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _infer(raw: dict[str, Any]) -> str | None:
    """W&B's rules for a spec without `distribution`."""
    if "parameters" in raw:
        return "nested"
    if "values" in raw:
        return "categorical"
    if "value" in raw:
        return "constant"
    if "min" in raw and "max" in raw:
        ints = all(isinstance(raw[k], int) and not isinstance(raw[k], bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    return None


def parse_parameters(raw: dict[str, Any], grid: bool, prefix: str = "parameters") -> tuple[tuple[Param, ...], list[Problem]]:
    params, problems = [], []
    for name, spec in raw.items():
        path = f"{prefix}.{name}"
        param = _parse_one(str(name), path, spec, grid, problems)
        if param is not None:
            params.append(param)
    return tuple(params), problems


def _parse_one(name: str, path: str, raw: Any, grid: bool, problems: list[Problem]) -> Param | None:
    if not isinstance(raw, dict):
        problems.append(Problem(path, f"must be a mapping such as {{values: [...]}} or {{min: .., max: ..}}, got {raw!r}"))
        return None
    for key in sorted(set(raw) - _SPEC_KEYS):
        close = difflib.get_close_matches(str(key), sorted(_SPEC_KEYS), n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(sorted(_SPEC_KEYS))}"
        problems.append(Problem(f"{path}.{key}", f"unknown key in a parameter spec; {fix}"))
    dist = raw.get("distribution")
    if dist is None:
        dist = _infer(raw)
        if dist is None:
            problems.append(Problem(path, "needs value, values, min and max, parameters, or an explicit distribution"))
            return None
    elif dist not in DISTRIBUTIONS:
        problems.append(Problem(f"{path}.distribution", f"{dist!r} is not a W&B distribution; use one of {', '.join(DISTRIBUTIONS)}"))
        return None
    if dist == "nested":
        if not isinstance(raw["parameters"], dict) or not raw["parameters"]:
            problems.append(Problem(f"{path}.parameters", "must be a non-empty mapping of nested parameters"))
            return None
        children, sub = parse_parameters(raw["parameters"], grid, prefix=f"{path}.parameters")
        problems += sub
        return Param(name, path, "nested", {}, children)
    required, optional = DISTRIBUTIONS[dist]
    spec = {**optional, **{k: v for k, v in raw.items() if k not in ("distribution", "parameters")}}
    before = len(problems)
    for key in required:
        if key not in raw:
            problems.append(Problem(f"{path}.{key}", f"is required for distribution {dist}"))
    if len(problems) > before:
        return None
    _check(dist, path, spec, problems)
    if grid and dist not in GRID_DISTRIBUTIONS:
        problems.append(Problem(path, f"method grid cannot enumerate distribution {dist}; give a list with values: [...], "
                                      "or use int_uniform / q_uniform, or use method random or bayes"))
    if len(problems) > before:
        return None
    return Param(name, path, dist, spec)


def _check(dist: str, path: str, spec: dict[str, Any], problems: list[Problem]) -> None:
    if dist == "categorical":
        values = spec["values"]
        if not isinstance(values, list) or not values:
            problems.append(Problem(f"{path}.values", "must be a non-empty list of choices"))
            return
        probs = spec.get("probabilities")
        if probs is not None:
            if not isinstance(probs, list) or len(probs) != len(values) or not all(_num(p) and p >= 0 for p in probs):
                problems.append(Problem(f"{path}.probabilities", f"must be {len(values)} non-negative numbers, one per value"))
            elif abs(sum(probs) - 1.0) > 1e-6:
                problems.append(Problem(f"{path}.probabilities", f"must add up to 1, they add up to {sum(probs):g}"))
        return
    for key in ("min", "max", "mu", "sigma", "q", "a", "b"):
        if key in spec and not _num(spec[key]):
            hint = " (YAML reads 1e-5 without a dot as text: write 1.0e-5)" if isinstance(spec[key], str) else ""
            problems.append(Problem(f"{path}.{key}", f"must be a number, got {spec[key]!r}{hint}"))
            return
    if dist == "int_uniform":
        for key in ("min", "max"):
            if not float(spec[key]).is_integer():
                problems.append(Problem(f"{path}.{key}", f"int_uniform needs whole numbers, got {spec[key]}"))
                return
    if dist in _POSITIVE_BOUNDS and min(spec["min"], spec["max"]) <= 0:
        problems.append(Problem(path, f"{dist} takes the actual values, which must be positive (min {spec['min']}, "
                                      f"max {spec['max']}); use bounds such as 1e-6..0.1, or log_uniform with exponents"))
    elif "min" in spec and "max" in spec and spec["min"] > spec["max"]:
        problems.append(Problem(path, f"min {spec['min']} is above max {spec['max']}; swap them"))
    for key in ("q", "sigma", "a", "b"):
        if key in spec and spec[key] <= 0:
            problems.append(Problem(f"{path}.{key}", f"must be greater than 0, got {spec[key]}"))


def _q(x: float, q: float) -> float:
    v = round(x / q) * q
    return int(v) if float(q).is_integer() else v


def sample(param: Param, rng: random.Random) -> Any:
    """One random draw, with W&B's meaning of every distribution."""
    d, s = param.distribution, param.spec
    if d == "nested":
        return {c.name: sample(c, rng) for c in param.children}
    if d == "constant":
        return s["value"]
    if d == "categorical":
        return rng.choices(s["values"], weights=s.get("probabilities"))[0]
    if d == "int_uniform":
        return rng.randint(int(s["min"]), int(s["max"]))
    if d == "uniform":
        return rng.uniform(s["min"], s["max"])
    if d == "q_uniform":
        return _q(rng.uniform(s["min"], s["max"]), s["q"])
    if d == "log_uniform":  # min and max are natural-log exponents
        return math.exp(rng.uniform(s["min"], s["max"]))
    if d == "log_uniform_values":
        return math.exp(rng.uniform(math.log(s["min"]), math.log(s["max"])))
    if d == "q_log_uniform":
        return _q(math.exp(rng.uniform(s["min"], s["max"])), s["q"])
    if d == "q_log_uniform_values":
        return _q(math.exp(rng.uniform(math.log(s["min"]), math.log(s["max"]))), s["q"])
    if d == "inv_log_uniform":  # log(1/x) is uniform in [min, max]
        return math.exp(-rng.uniform(s["min"], s["max"]))
    if d == "inv_log_uniform_values":
        return 1.0 / math.exp(rng.uniform(math.log(1.0 / s["max"]), math.log(1.0 / s["min"])))
    if d == "normal":
        return rng.gauss(s["mu"], s["sigma"])
    if d == "q_normal":
        return _q(rng.gauss(s["mu"], s["sigma"]), s["q"])
    if d == "log_normal":
        return math.exp(rng.gauss(s["mu"], s["sigma"]))
    if d == "q_log_normal":
        return _q(math.exp(rng.gauss(s["mu"], s["sigma"])), s["q"])
    if d == "beta":
        return rng.betavariate(s["a"], s["b"])
    if d == "q_beta":
        return _q(rng.betavariate(s["a"], s["b"]), s["q"])
    raise AssertionError(f"unhandled distribution {d}")


def grid_axis(param: Param) -> list[Any]:
    """The values a grid search takes for one (non-nested) parameter."""
    d, s = param.distribution, param.spec
    if d == "constant":
        return [s["value"]]
    if d == "categorical":
        return list(s["values"])
    if d == "int_uniform":
        return list(range(int(s["min"]), int(s["max"]) + 1))
    if d == "q_uniform":
        n = int(math.floor((s["max"] - s["min"]) / s["q"] + 1e-9))
        return [_q(s["min"] + i * s["q"], s["q"]) for i in range(n + 1)]
    raise AssertionError(f"{param.path}: {d} is not enumerable")


def flatten(params: tuple[Param, ...]) -> list[Param]:
    """Leaf parameters in config order (nested ones included)."""
    out: list[Param] = []
    for p in params:
        out += flatten(p.children) if p.distribution == "nested" else [p]
    return out
