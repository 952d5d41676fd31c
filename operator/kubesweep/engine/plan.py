"""`kubesweep plan`: what a sweep will do before it spends any GPU time."""
from __future__ import annotations

import shlex
from itertools import islice
from typing import Any

from .command import ENVVAR, build_argv
from .config import Loaded
from .savings import estimate_budget, planned_iterations
from .search import BAYES_MODELLED, make_sampler, sweep_size
from .params import flatten

DEFAULT_RUNS = 100


def plan(loaded: Loaded, runs: int | None, commands: int, seed: str, iterations: int | None,
         env: dict[str, str]) -> dict[str, Any]:
    config = loaded.config
    rule = config.hyperband
    warnings = list(loaded.warnings)
    size = sweep_size(config)
    n_runs = runs or size or DEFAULT_RUNS
    sampler = make_sampler(config, seed)
    first = sampler.suggest(0, []) or {}
    planned, source = (iterations, "--iterations") if iterations else planned_iterations(config, first)
    out: dict[str, Any] = {
        "method": config.method,
        "metric": None if config.metric is None else {"name": config.metric.name, "goal": config.metric.goal},
        "runs": n_runs,
        "runs_source": "--runs" if runs else (_size_source(config, size) if size else f"default {DEFAULT_RUNS} (no run_cap)"),
        "early_terminate": None,
        "warnings": warnings,
    }
    for i, item in enumerate(config.command or ()):
        for name in ENVVAR.findall(item):
            if name not in env:
                warnings.append(f"command[{i}]: ${{envvar:{name}}} is not set here, so it becomes the text {name!r} "
                                "(as in W&B); in the cluster it comes from the template container's env")
    if config.method == "bayes":
        random_leaves = [p.path for p in flatten(config.parameters) if p.distribution not in BAYES_MODELLED]
        if random_leaves:
            warnings.append(f"method bayes models {', '.join(random_leaves)} by random draws (TPE cannot model their distribution)")
    if rule is not None:
        # Unbounded bands never end: show the first five.
        bands = rule.bands_from_max_iter() if rule.bounded else list(islice(rule.iter_bands(), 5))
        out["early_terminate"] = {
            "bands": bands, "bounded": rule.bounded, "eta": rule.eta, "strict": rule.strict, "derivation": rule.explain(),
        }
    if planned and rule is not None:
        bands_in_run = rule.bands_up_to(planned)
        if bands_in_run and bands_in_run[-1] == planned:
            warnings.append(f"early_terminate: band {planned} equals the run length ({planned} iterations from {source}): "
                            "runs are judged at their last iteration, where a stop saves nothing and SIGTERM can "
                            "interrupt a run as it saves its results")
        if bands_in_run and bands_in_run[0] * 10 <= planned:
            warnings.append(f"early_terminate: the first band is iteration {bands_in_run[0]} of {planned}: runs are "
                            "compared that early, so if fast-learning runs plateau higher, the eventual best run "
                            "can be stopped there (benchmarks/README.md, Savings)")
    if planned:
        est = estimate_budget(rule, n_runs, planned)
        out["budget"] = {
            "iterations_per_run": planned, "iterations_per_run_source": source,
            "without_early_termination": est.without_early_termination,
            "with_early_termination_estimate": est.with_early_termination,
            "saved_fraction_estimate": round(est.saved_fraction, 4),
            "runs_alive_after_band": [{"band": b, "runs": n} for b, n in est.survivors_per_band],
        }
    else:
        out["budget"] = None
        warnings.append("iterations per run unknown: pass --iterations N, or set iterations_per_run, to see the budget")
    cmds = []
    for i in range(commands):
        params = sampler.suggest(i, [])
        if params is None:
            break
        argv = build_argv(config.command, params, program=config.program, env=env, args_json_file="/etc/kubesweep/args.json")
        cmds.append({"index": i, "parameters": params, "argv": argv})
    out["commands"] = cmds
    return out


def render(p: dict[str, Any]) -> str:
    lines = [f"method: {p['method']}"]
    if p["metric"]:
        lines.append(f"metric: {p['metric']['name']} ({p['metric']['goal']})")
    et = p["early_terminate"]
    if et:
        more = "" if et["bounded"] else ", ..."
        lines.append(f"bands: {', '.join(map(str, et['bands']))}{more}   (eta {et['eta']:g}, strict {str(et['strict']).lower()})")
        lines += [f"  {d}" for d in et["derivation"]]
    else:
        lines.append("early termination: off (no early_terminate)")
    b = p["budget"]
    lines.append(f"runs: {p['runs']} ({p['runs_source']})")
    if b:
        lines.append(f"iterations per run: {b['iterations_per_run']} (from {b['iterations_per_run_source']})")
        lines.append(f"iteration budget without early termination: {b['without_early_termination']}")
        lines.append(f"iteration budget with early termination (estimate): {b['with_early_termination_estimate']}"
                     f"  ({b['saved_fraction_estimate']:.0%} saved; runs in lockstep: with about 10 or more at once a "
                     "sweep trains close to this, run one at a time up to ~30% more)")
        for a in b["runs_alive_after_band"]:
            lines.append(f"  after band {a['band']}: {a['runs']} run{'s' if a['runs'] != 1 else ''} keep training")
    for w in p["warnings"]:
        lines.append(f"warning: {w}")
    if p["commands"]:
        lines.append("commands as the cluster runs them (locally, ${interpreter} is the Python running kubesweep):")
    for c in p["commands"]:
        lines.append(f"run {c['index']}: {shlex.join(c['argv'])}")
    return "\n".join(lines)


def _size_source(config: Any, size: int) -> str:
    if config.run_cap == size:
        return "run_cap"
    return "grid size"
