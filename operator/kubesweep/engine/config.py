"""Load and validate a sweep: a W&B sweep config, bare or as the `spec` of a Sweep manifest.

Structure (types, enums, bounds, unknown keys) is checked with JSON Schema; meaning (bands that
exist, distributions that can be sampled, grid that can be enumerated) is checked in code. Every
problem names its field and the fix. Legal-but-surprising configs produce warnings, never changes.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import yaml

from .bands import HyperbandRule
from .command import WHOLE_ITEM_MACROS
from .params import Param, flatten, parse_parameters
from .problems import ConfigError, Problem

WANDB_KEYS = {
    "method", "metric", "parameters", "early_terminate", "run_cap", "command", "program",
    "name", "description", "project", "entity", "controller", "job",
}
KUBESWEEP_KEYS = {
    "parallelism", "template", "stop_grace_period_seconds", "metrics", "max_failed_runs",
    "iterations_per_run",
}
_INT = {"type": "integer"}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["method"],
    "additionalProperties": False,
    "properties": {
        "method": {"enum": ["grid", "random", "bayes"]},
        "metric": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "goal": {"enum": ["minimize", "maximize"]},
                "target": {"type": "number"},
            },
        },
        "parameters": {"type": "object", "minProperties": 1},
        "early_terminate": {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["hyperband"]},
                "min_iter": {**_INT, "minimum": 1},
                "max_iter": {**_INT, "minimum": 1},
                "s": {**_INT, "minimum": 1},
                "eta": {"type": "number", "exclusiveMinimum": 1},
                "strict": {"type": "boolean"},
            },
        },
        "run_cap": {**_INT, "minimum": 1},
        "command": {"type": "array", "items": {"type": ["string", "number"]}},
        "program": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "project": {"type": "string"},
        "entity": {"type": "string"},
        "controller": {"type": "object"},
        "job": {"type": "string"},
        "parallelism": {**_INT, "minimum": 1, "maximum": 1000},
        "template": {"type": "object"},
        "stop_grace_period_seconds": {**_INT, "minimum": 0, "maximum": 3600},
        "metrics": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "source": {"enum": ["logs", "push"]},
                "container": {"type": "string", "minLength": 1},
            },
        },
        "max_failed_runs": {**_INT, "minimum": 0},
        "iterations_per_run": {**_INT, "minimum": 1},
    },
}

# How to fix each field, appended to the schema's complaint.
FIXES = {
    "method": "use grid, random or bayes",
    "metric": "write metric: {name: <logged key>, goal: minimize|maximize}",
    "metric.name": "set it to the exact key your script logs, e.g. val_loss",
    "metric.goal": "use minimize or maximize (W&B accepts no abbreviations)",
    "parameters": "add at least one parameter, e.g. lr: {min: 0.0001, max: 0.1}",
    "early_terminate": "write early_terminate: {type: hyperband, min_iter: 3} (or max_iter with s)",
    "early_terminate.type": "hyperband is the only early_terminate type",
    "early_terminate.min_iter": "use a whole number of iterations >= 1, e.g. 3",
    "early_terminate.max_iter": "use a whole number of iterations >= 1, together with s",
    "early_terminate.s": "use a whole number >= 1: the number of bands below max_iter",
    "early_terminate.eta": "use a number greater than 1 (W&B's default is 3)",
    "early_terminate.strict": "use true or false",
    "run_cap": "use a whole number >= 1, or leave run_cap out",
    "parallelism": "use a whole number from 1 to 1000",
    "stop_grace_period_seconds": "use a whole number of seconds from 0 to 3600",
    "max_failed_runs": "use a whole number >= 0",
    "iterations_per_run": "use a whole number >= 1",
    "metrics.source": "use logs (read the container log) or push (kubesweep.log)",
    "command": "write a list of strings, e.g. [${env}, ${interpreter}, ${program}, ${args}]",
}


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str = "minimize"
    target: float | None = None

    @property
    def maximize(self) -> bool:
        return self.goal == "maximize"


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep. `raw` is the config exactly as written (W&B keys and ours)."""

    method: str
    parameters: tuple[Param, ...]
    metric: Metric | None = None
    hyperband: HyperbandRule | None = None
    run_cap: int | None = None
    command: tuple[str, ...] | None = None
    program: str | None = None
    name: str | None = None
    parallelism: int = 1
    template: dict[str, Any] | None = None
    stop_grace_period_seconds: int = 30
    metrics_source: str = "logs"
    metrics_container: str | None = None
    max_failed_runs: int = 5
    iterations_per_run: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Loaded:
    config: SweepConfig
    warnings: list[str]


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads `1e-5` as a string (YAML 1.1); kubectl and the API server read it as a number.
    Read it as a number here too, so a sweep.yaml means the same locally and in the cluster."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def unwrap_manifest(doc: Any) -> tuple[dict[str, Any], str | None]:
    """A Sweep manifest's spec (and its metadata.name), or a bare W&B config as it is."""
    if not isinstance(doc, dict):
        raise ConfigError([Problem("(top level)", "a sweep config must be a mapping of keys such as method, metric, parameters")])
    if doc.get("kind") == "Sweep" and "spec" in doc:
        spec = doc["spec"]
        if not isinstance(spec, dict):
            raise ConfigError([Problem("spec", "must be a mapping holding the W&B sweep config")])
        return spec, (doc.get("metadata") or {}).get("name")
    return doc, None


def load_file(path: str) -> Loaded:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8")]) from None
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(path, f"is not valid YAML: {exc}")]) from None
    return load(doc)


def load(doc: Any) -> Loaded:
    """Validate a bare config or a Sweep manifest. Raises ConfigError listing every problem."""
    spec, manifest_name = unwrap_manifest(doc)
    problems = _schema_problems(spec)
    warnings: list[str] = []
    params: tuple[Param, ...] = ()
    method = spec.get("method")
    if isinstance(spec.get("parameters"), dict) and spec["parameters"]:
        params, param_problems = parse_parameters(spec["parameters"], grid=method == "grid")
        problems += param_problems
    elif "parameters" not in spec:
        problems.append(Problem("parameters", "is missing: " + FIXES["parameters"]))
    metric = _metric(spec, problems)
    rule = _hyperband(spec, problems, warnings)
    if problems:
        raise ConfigError(_dedupe(problems))
    command = tuple(str(c) for c in spec["command"]) if "command" in spec else None
    metrics = spec.get("metrics") or {}
    config = SweepConfig(
        method=method,
        parameters=params,
        metric=metric,
        hyperband=rule,
        run_cap=spec.get("run_cap"),
        command=command,
        program=spec.get("program"),
        name=spec.get("name") or manifest_name,
        parallelism=spec.get("parallelism", 1),
        template=spec.get("template"),
        stop_grace_period_seconds=spec.get("stop_grace_period_seconds", 30),
        metrics_source=metrics.get("source", "logs"),
        metrics_container=metrics.get("container"),
        max_failed_runs=spec.get("max_failed_runs", 5),
        iterations_per_run=spec.get("iterations_per_run"),
        raw=spec,
    )
    warnings += _surprises(config)
    return Loaded(config, warnings)


def _schema_problems(spec: dict[str, Any]) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = []
    for err in sorted(validator.iter_errors(spec), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in err.absolute_path)
        if err.validator == "additionalProperties":
            allowed = set(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - allowed):
                where = f"{path}.{key}" if path else key
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                fix = f"did you mean '{hint[0]}'?" if hint else f"known keys here: {', '.join(sorted(allowed))}"
                problems.append(Problem(where, f"unknown key; {fix}"))
            continue
        if err.validator == "required":
            missing = [k for k in err.validator_value if k not in err.instance]
            for key in missing:
                where = f"{path}.{key}" if path else key
                problems.append(Problem(where, "is required: " + FIXES.get(where, "add it")))
            continue
        fix = FIXES.get(path)
        what = _describe(err)
        problems.append(Problem(path or "(top level)", what + (f"; {fix}" if fix else "")))
    return problems


def _describe(err: jsonschema.ValidationError) -> str:
    got = err.instance
    if err.validator == "type":
        want = err.validator_value
        if want == "integer" and isinstance(got, float):
            return f"must be a whole number, got {got}"
        if want == "object":
            return f"must be a mapping, got {type(got).__name__} {got!r}"
        if isinstance(got, str) and want in ("number", "integer"):
            return f"must be a number, got the string {got!r}"
        return f"must be of type {want}, got {type(got).__name__} {got!r}"
    if err.validator == "enum":
        return f"{got!r} is not one of {', '.join(map(str, err.validator_value))}"
    if err.validator == "minimum":
        return f"must be at least {err.validator_value}, got {got}"
    if err.validator == "maximum":
        return f"must be at most {err.validator_value}, got {got}"
    if err.validator == "exclusiveMinimum":
        return f"must be greater than {err.validator_value}, got {got}"
    if err.validator == "minLength":
        return "must not be empty"
    if err.validator == "minProperties":
        return "must not be empty"
    return err.message


def _metric(spec: dict[str, Any], problems: list[Problem]) -> Metric | None:
    raw = spec.get("metric")
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw.get("name"):
        if raw is None:
            if spec.get("method") == "bayes":
                problems.append(Problem("metric", "is required for method bayes: " + FIXES["metric"]))
            elif "early_terminate" in spec:
                problems.append(Problem("metric", "is required for early_terminate (bands compare runs by it): " + FIXES["metric"]))
        return None
    goal = raw.get("goal", "minimize")
    if goal not in ("minimize", "maximize"):
        return None
    return Metric(raw["name"], goal, raw.get("target"))


def _hyperband(spec: dict[str, Any], problems: list[Problem], warnings: list[str]) -> HyperbandRule | None:
    et = spec.get("early_terminate")
    if not isinstance(et, dict) or et.get("type") != "hyperband":
        return None

    def ok(key: str, kind: type) -> bool:
        v = et.get(key)
        return v is None or (isinstance(v, kind) and not isinstance(v, bool) and v >= 1)

    if not all(ok(k, int) for k in ("min_iter", "max_iter", "s")):
        return None  # the schema already reported it
    eta = et.get("eta", 3)
    if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not eta > 1 or not math.isfinite(eta):
        return None
    min_iter, max_iter, s = et.get("min_iter"), et.get("max_iter"), et.get("s")
    if min_iter is None and max_iter is None:
        problems.append(Problem("early_terminate", "needs min_iter (bands min_iter*eta^k) or max_iter with s (bands max_iter/eta^k)"))
        return None
    if max_iter is not None and s is None:
        problems.append(Problem("early_terminate.s", "is required with max_iter: W&B makes s bands max_iter/eta^1..s; add e.g. s: 2"))
        return None
    rule = HyperbandRule(eta=float(eta), strict=et.get("strict", True), min_iter=min_iter, max_iter=max_iter, s=s)
    if max_iter is not None:
        if not rule.bands_from_max_iter():
            problems.append(Problem(
                "early_terminate.max_iter",
                f"max_iter {max_iter} with eta {eta} leaves no band (max_iter/eta is below 1); "
                f"raise max_iter to at least {math.ceil(eta)} or use min_iter instead",
            ))
            return None
        if min_iter is not None:
            warnings.append(
                f"early_terminate.min_iter: {min_iter} is ignored because max_iter is set (W&B computes bands from "
                f"max_iter/eta^k only), so the bands are {rule.bands_from_max_iter()}; remove min_iter, or remove "
                f"max_iter and s to get bands min_iter*eta^k"
            )
    elif s is not None:
        warnings.append(f"early_terminate.s: {s} is ignored without max_iter; bands are min_iter*eta^k = {rule.bands_up_to(10**6)[:6]}...")
    return rule


EPOCH_NAMES = ("epochs", "num_epochs", "n_epochs", "max_epochs", "epoch")
_EPOCH_ARG = re.compile(r"^-{0,2}(" + "|".join(EPOCH_NAMES) + r")(?:=(\d+))?$")


def fixed_epochs_in_command(command: tuple[str, ...] | None) -> tuple[int, int] | None:
    """(index, N) of a literal `--epochs N` / `--epochs=N` / `epochs=N` in the command, if any."""
    if not command:
        return None
    for i, item in enumerate(command):
        m = _EPOCH_ARG.match(item)
        if not m:
            continue
        if m.group(2):
            return i, int(m.group(2))
        if item.startswith("-") and i + 1 < len(command) and command[i + 1].isdigit():
            return i, int(command[i + 1])
    return None


def _surprises(config: SweepConfig) -> list[str]:
    out = []
    metric, rule = config.metric, config.hyperband
    if metric is not None and metric.name != metric.name.strip():
        out.append(f"metric.name: {metric.name!r} has leading or trailing spaces; the logged key must match exactly")
    if config.method in ("random", "bayes") and config.run_cap is None:
        out.append(f"run_cap: not set, so method {config.method} keeps starting runs until the sweep is deleted (as W&B does)")
    if rule is not None:
        first = rule.bands_up_to(10**9)[0]
        last = rule.bands_from_max_iter()[-1] if rule.bounded else None
        fixed = fixed_epochs_in_command(config.command)
        if fixed is not None:
            i, n = fixed
            if n < first:
                out.append(f"command[{i}]: a fixed {n} epochs ends every run before the first band {first}: nothing will be stopped early")
            elif last is not None and n < last:
                out.append(f"command[{i}]: a fixed {n} epochs ends every run before band {last}: bands above {n} never apply")
        for p in config.parameters:
            if p.name in EPOCH_NAMES and p.distribution in ("constant", "categorical"):
                values = [p.spec["value"]] if p.distribution == "constant" else p.spec["values"]
                small = [v for v in values if isinstance(v, int) and v < (last or first)]
                if small:
                    out.append(f"{p.path}: runs with {p.name} in {small} end before band {last or first} and are never judged there")
    for p in flatten(config.parameters):
        if p.distribution in ("log_uniform", "q_log_uniform", "inv_log_uniform") and 0 < p.spec["min"] < p.spec["max"] <= 1:
            lo, hi = math.exp(p.spec["min"]), math.exp(p.spec["max"])
            out.append(f"{p.path}: {p.distribution} takes natural-log exponents (W&B), so min {p.spec['min']} and max "
                       f"{p.spec['max']} sample values near {lo:.3g}..{hi:.3g}; for the values themselves use "
                       f"{p.distribution}_values")
        if "min" in p.spec and "max" in p.spec and p.spec["min"] == p.spec["max"] and p.distribution != "constant":
            out.append(f"{p.path}: min and max are both {p.spec['min']}: every run gets that value (use value: instead)")
    for i, item in enumerate(config.command or ()):
        if item.startswith("${") and item.endswith("}") and item[2:-1] not in WHOLE_ITEM_MACROS and not item.startswith("${envvar:"):
            out.append(f"command[{i}]: {item!r} is not a W&B macro; kubesweep passes it unchanged (the W&B agent would drop it)")
    return out


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.field, p.message) not in seen:
            seen.add((p.field, p.message))
            out.append(p)
    return out
