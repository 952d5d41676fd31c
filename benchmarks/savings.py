#!/usr/bin/env python3
"""Benchmark: what Hyperband early termination saves, and whether the best run survives it.

Two parts, each compared with `kubesweep plan --json --runs N --iterations T`
(budget.with_early_termination_estimate, the lockstep estimate):

1. The example sweep (examples/digits/sweep.yaml), really run with `kubesweep run --workdir <tmp>
   --seed S` for a few seeds, and once more per seed from a copy without `early_terminate` (same
   --seed, so the same sampled parameters; `program` made absolute, nothing else changed), so that
   every run's final value is known. The bench checks that both sweeps got the same parameters and
   that every stopped run's values are the first values of its full run (train.py is deterministic).

2. Synthetic sweeps for three configs shaped like public ones:
     (a) min_iter 4, max_iter 20, s 2, eta 3 -> bands 2, 6 (min_iter ignored), 20-epoch runs;
     (b) max_iter 27, s 2, eta 3 -> bands 3, 9, 27-epoch runs;
     (c) min_iter 3, eta 3 -> bands 3, 9, 27, ..., 27-epoch runs.
   N runs (50 and 200) per sweep, each with a learning curve
       val_loss(e) = q + (a - q) * exp(-e / tau) times (1 + 2% Gaussian noise per epoch),
   arriving as a sweep with parallelism P (10) produces them: a run starts the moment a slot frees
   (the first P at random moments within the first second), trains 1 s per epoch on 1 GPU and
   reports one value per epoch, so reports of different runs interleave in continuous time. Every
   report goes through `kubesweep.engine.tracker.SweepTracker` with the config; a stopped run frees
   its slot at once and its later values are dropped. Since every curve is known to the end, "the
   best run" is the run with the best FINAL value (its value at epoch T), stopped or not.
   Three curve families, all with tau = T * 30^-u for a learning-rate-like u ~ U(0, 1) (fast runs
   are those with large u: tau runs from T down to T/30) and plateau q = (0.05 + 0.35 w^2) * lognormal(0, 0.3):
   `crossing` (w = u for every run: fast runs plateau higher and are overtaken by slower, better
   ones), `mixed` (w = u for half the runs), `independent` (w drawn on its own). In all, 10% of
   runs never learn (q ~ a), and a ~ 2.3 * U(0.95, 1.15) (chance for 10 classes is ln 10 = 2.30).
   (b) and (c) get the same curves and arrivals, so they differ only by band 27. A second table
   repeats the mixed family at parallelism 1, 3 and 50.

Per sweep: iterations trained vs N x T; GPU-seconds used (exact slot time, including the part of
an epoch a run was in when it was stopped) and the GPU-seconds saved as the engine reports them
(`kubesweep.engine.savings.run_usage`, what `kubectl get sweeps` and the local summary show);
the sweep's wall-clock with and without early termination; whether the best-final run survived
(trained all T epochs), and if not, where it was stopped, the regret (best surviving final value /
best final value - 1) and the surviving best's rank among all N; for comparison, the same for a
sweep without early termination given the same GPU-seconds (the first floor(used / T) runs to the
end; runs are i.i.d., so a random subset); runs stopped after passing the band they were stopped
for (W&B re-evaluates on every report); runs stopped at their last epoch; and Spearman's rho
between the value at the first band and the final value. Medians over seeds.

    .venv/bin/python benchmarks/savings.py           # full: 100 seeds, N = 50, 200; example 3 seeds (~4.5 min)
    .venv/bin/python benchmarks/savings.py --quick   # smoke: 3 seeds, N = 30; example 1 seed, 6 runs (< 60 s)

Writes results/savings.json (with --quick only when --json is given). Exit 1 if an internal
consistency check fails (printed as CHECK FAILED).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import heapq
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
try:
    import kubesweep  # noqa: F401
except ImportError:  # run with a python that lacks the editable install
    sys.path.insert(0, str(ROOT / "operator"))

import yaml  # noqa: E402

from kubesweep.engine.config import load, load_yaml  # noqa: E402
from kubesweep.engine.replay import parse_events, replay  # noqa: E402
from kubesweep.engine.savings import Usage, run_usage  # noqa: E402
from kubesweep.engine.tracker import EARLY_STOPPED, SUCCEEDED, SweepTracker  # noqa: E402
from machine import machine  # noqa: E402 - benchmarks/ is on sys.path when run as a script

EXAMPLE = ROOT / "examples" / "digits" / "sweep.yaml"
METRIC = "val_loss"
NOISE = 0.02  # per-epoch multiplicative noise on the observed value
BROKEN = 0.10  # share of runs that never learn
# curve families: the share of runs whose plateau is tied to their speed (fast runs plateau higher)
FAMILIES = {"crossing": 1.0, "mixed": 0.5, "independent": 0.0}
PARALLELISM = 10
PARALLELISM_SWEEP = (1, 3, 10, 50)


@dataclass(frozen=True)
class Synth:
    key: str
    label: str
    early_terminate: dict[str, Any]
    epochs: int
    bands: tuple[int, ...]  # as expected (checked against the engine's)


CONFIGS = (
    Synth("a", "min_iter 4, max_iter 20, s 2, eta 3", {"type": "hyperband", "min_iter": 4, "max_iter": 20, "s": 2, "eta": 3}, 20, (2, 6)),
    Synth("b", "max_iter 27, s 2, eta 3", {"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3}, 27, (3, 9)),
    Synth("c", "min_iter 3, eta 3", {"type": "hyperband", "min_iter": 3, "eta": 3}, 27, (3, 9, 27)),
)

FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        FAILURES.append(what)
        print(f"CHECK FAILED: {what}", flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# -- kubesweep plan --------------------------------------------------------------------------------
def plan_estimate(sweep_file: Path, runs: int, iterations: int) -> dict[str, Any]:
    """`kubesweep plan SWEEP --json --runs N --iterations T`, the CLI itself."""
    out = subprocess.run(
        [sys.executable, "-m", "kubesweep.cli", "plan", str(sweep_file), "--json", "--runs", str(runs),
         "--iterations", str(iterations)],
        capture_output=True, text=True, check=True, cwd=ROOT)
    p = json.loads(out.stdout)
    b = p["budget"]
    return {"bands": p["early_terminate"]["bands"] if p["early_terminate"] else [],
            "without_early_termination": b["without_early_termination"],
            "with_early_termination_estimate": b["with_early_termination_estimate"],
            "runs_alive_after_band": b["runs_alive_after_band"], "warnings": p["warnings"]}


# -- synthetic curves ------------------------------------------------------------------------------
def make_curves(rng: random.Random, n: int, epochs: int, family: str) -> list[list[float]]:
    curves = []
    for _ in range(n):
        a = 2.3 * rng.uniform(0.95, 1.15)
        if rng.random() < BROKEN:
            q, tau = a * rng.uniform(0.85, 1.0), epochs * rng.uniform(0.5, 2.0)
        else:
            u, v = rng.random(), rng.random()
            if rng.random() < FAMILIES[family]:
                v = u  # plateau tied to speed
            tau = epochs * 30.0 ** -u
            q = (0.05 + 0.35 * v * v) * rng.lognormvariate(0.0, 0.3)
        curves.append([(q + (a - q) * math.exp(-e / tau)) * (1.0 + NOISE * rng.gauss(0.0, 1.0))
                       for e in range(1, epochs + 1)])
    return curves


def spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for pos, i in enumerate(order):
            r[i] = float(pos)
        return r
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return num / den if den else 0.0


def sweep_dict(et: dict[str, Any] | None, runs: int, epochs: int, parallelism: int) -> dict[str, Any]:
    d: dict[str, Any] = {
        "method": "random", "metric": {"name": METRIC, "goal": "minimize"},
        "parameters": {"u": {"min": 0.0, "max": 1.0}}, "run_cap": runs, "parallelism": parallelism,
        "iterations_per_run": epochs,
    }
    if et is not None:
        d["early_terminate"] = et
    return d


def simulate(config, curves: list[list[float]], parallelism: int, rng: random.Random) -> dict[str, Any]:
    """Replay the sweep through the engine in continuous time; 1 s per epoch, 1 GPU per run."""
    n, epochs = len(curves), len(curves[0])
    tracker = SweepTracker(config)
    names = [f"r{i:04d}" for i in range(n)]
    start = [0.0] * n
    left = [None] * n  # when the run left its slot
    reported = [0] * n
    heap: list[tuple[float, float, int]] = []  # (time, tie-break, run): the run's next report
    nxt = 0

    def launch(i: int, at: float) -> None:
        start[i] = at
        heapq.heappush(heap, (at + 1.0, rng.random(), i))

    for i in range(min(parallelism, n)):
        launch(i, rng.random())  # the first P runs come up at slightly different moments
    nxt = min(parallelism, n)
    stopped_at_last = 0
    while heap:
        t, _, i = heapq.heappop(heap)
        if left[i] is not None:
            continue  # stopped while training this epoch: the value is never reported
        reported[i] += 1
        decisions = tracker.row(names[i], {METRIC: curves[i][reported[i] - 1]}, at=t)
        freed = []
        for d in decisions:
            j = int(d.run[1:])
            left[j] = t
            freed.append(j)
            if reported[j] == epochs:
                stopped_at_last += 1
        if left[i] is None:
            if reported[i] == epochs:
                tracker.end(names[i], SUCCEEDED, "Completed")
                left[i] = t
                freed.append(i)
            else:
                heapq.heappush(heap, (t + 1.0, rng.random(), i))
        for _ in freed:
            if nxt < n:
                launch(nxt, t)
                nxt += 1
    usage, gpu_used, wasted = Usage(), 0.0, 0.0
    for i, name in enumerate(names):
        s = tracker.runs[name]
        seconds = left[i] - start[i]
        gpu_used += seconds
        wasted += seconds - s.iterations  # part of an epoch in progress when stopped
        usage += run_usage(s.iterations, seconds, 1.0, epochs, s.state == EARLY_STOPPED, s.seconds_per_iteration())
    states = [tracker.runs[nm].state for nm in names]
    return {
        "iterations": [tracker.runs[nm].iterations for nm in names],
        "stop_band": [tracker.runs[nm].stop.band if tracker.runs[nm].stop else None for nm in names],
        "stop_runs_at_band": [tracker.runs[nm].stop.runs_at_band if tracker.runs[nm].stop else None for nm in names],
        "stop_iteration": [tracker.runs[nm].stop.iteration if tracker.runs[nm].stop else None for nm in names],
        "states": states, "usage": usage, "gpu_used": gpu_used, "wasted": wasted,
        "makespan": max(left), "stopped_at_last": stopped_at_last,
        "bands": tracker.bands_for_display(),
    }


def seed_row(cfg: Synth, n: int, family: str, seed: int, parallelism: int, loaded, plain) -> dict[str, Any]:
    """One synthetic sweep: curves and arrival drawn from the seed, replayed with and without the rule."""
    full, first_band = n * cfg.epochs, cfg.bands[0]
    where = f"({cfg.key}) N={n} {family} P={parallelism} seed {seed}"
    curves = make_curves(random.Random(f"curves/{family}/{n}/{cfg.epochs}/{seed}"), n, cfg.epochs, family)  # (b), (c) share them
    sim = simulate(loaded.config, curves, parallelism, random.Random(f"arrival/{n}/{parallelism}/{seed}"))
    base = simulate(plain, curves, parallelism, random.Random(f"arrival/{n}/{parallelism}/{seed}"))
    check(tuple(b for b in sim["bands"] if b <= cfg.epochs) == cfg.bands, f"({cfg.key}) engine bands {sim['bands']} != {cfg.bands}")
    u: Usage = sim["usage"]
    finals = [c[-1] for c in curves]
    best = min(range(n), key=finals.__getitem__)
    survivors = [i for i in range(n) if sim["iterations"][i] == cfg.epochs]
    surv_best = min(survivors, key=finals.__getitem__)
    ranked = sorted(range(n), key=finals.__getitem__)
    k = int(sim["gpu_used"] // cfg.epochs)  # full runs the same GPU-seconds buy
    k_best = min(range(max(k, 1)), key=finals.__getitem__)
    row = {
        "seed": seed,
        "iterations_trained": u.iterations_trained,
        "iterations_saved": u.iterations_saved,
        "gpu_seconds_used": round(sim["gpu_used"], 3),
        "gpu_seconds_saved_reported": round(u.gpu_seconds_saved, 3),
        "gpu_seconds_in_stopped_epochs": round(sim["wasted"], 3),
        "stopped": sim["states"].count(EARLY_STOPPED),
        "succeeded": sim["states"].count(SUCCEEDED),
        "stopped_at_last_iteration": sim["stopped_at_last"],
        "survivors": len(survivors),
        "wall_seconds": round(sim["makespan"], 3),
        "wall_seconds_without_early_termination": round(base["makespan"], 3),
        "best_final": round(finals[best], 6),
        "best_survived": sim["iterations"][best] == cfg.epochs,
        "best_lost_at_band": sim["stop_band"][best] if sim["iterations"][best] < cfg.epochs else None,
        "best_lost_among_runs": sim["stop_runs_at_band"][best] if sim["iterations"][best] < cfg.epochs else None,
        "best_lost_at_iteration": sim["stop_iteration"][best] if sim["iterations"][best] < cfg.epochs else None,
        "late_stops": sum(1 for b, it in zip(sim["stop_band"], sim["stop_iteration"]) if b is not None and it > b),
        "iterations_past_band_in_late_stops": sum(it - b for b, it in zip(sim["stop_band"], sim["stop_iteration"])
                                                  if b is not None and it > b),
        "surviving_best_final": round(finals[surv_best], 6),
        "regret_relative": round(finals[surv_best] / finals[best] - 1, 6),
        "surviving_best_rank": ranked.index(surv_best) + 1,
        "same_budget_runs": k,
        "same_budget_best_found": best < k,
        "same_budget_regret_relative": round(finals[k_best] / finals[best] - 1, 6),
        "spearman_first_band_vs_final": round(spearman([c[first_band - 1] for c in curves], finals), 4),
    }
    # internal consistency, every seed
    check(u.iterations_trained + u.iterations_saved == full,
          f"{where}: trained {u.iterations_trained} + saved {u.iterations_saved} != N x T {full}")
    check(abs(sim["gpu_used"] - sim["wasted"] + u.gpu_seconds_saved - full) < 1e-6,
          f"{where}: GPU-s used {sim['gpu_used']} - in stopped epochs {sim['wasted']} + saved {u.gpu_seconds_saved} != N x T {full}")
    check(abs(u.gpu_seconds_used - sim["gpu_used"]) < 1e-6, f"{where}: run_usage GPU-s used != slot time")
    check(row["stopped"] + row["succeeded"] == n, f"{where}: runs by state do not add up to N")
    check(base["usage"].iterations_trained == full and base["makespan"] >= sim["makespan"] - 1e-9,
          f"{where}: the sweep without early termination trained {base['usage'].iterations_trained} != {full}")
    check(row["best_survived"] == (finals[surv_best] == finals[best]), f"{where}: best survived but regret > 0")
    check(row["survivors"] == row["succeeded"] + row["stopped_at_last_iteration"], f"{where}: survivors don't add up")
    return row


def synthetic(sizes: tuple[int, ...], seeds: int, parallelisms: tuple[int, ...], families: tuple[str, ...],
              tmp: Path, label: str) -> list[dict[str, Any]]:
    rows = []
    for cfg in CONFIGS:
        for n in sizes:
            d = sweep_dict(cfg.early_terminate, n, cfg.epochs, 1)
            loaded = load(d)
            plain = load(sweep_dict(None, n, cfg.epochs, 1)).config
            f = tmp / f"synthetic-{cfg.key}.yaml"
            f.write_text(yaml.safe_dump(d, sort_keys=False))
            plan = plan_estimate(f, n, cfg.epochs)
            check(tuple(plan["bands"][:len(cfg.bands)]) == cfg.bands, f"({cfg.key}) plan bands {plan['bands']} != {cfg.bands}")
            for parallelism in parallelisms:
                for family in families:
                    per_seed = [seed_row(cfg, n, family, seed, parallelism, loaded, plain) for seed in range(seeds)]
                    r = summarise(cfg, n, family, parallelism, plan, loaded.warnings, per_seed)
                    rows.append(r)
                    print(f"# {label}: ({cfg.key}) N={n} P={parallelism} {family}: trained median "
                          f"{r['iterations_trained_median']:g} of {r['full']}, plan {r['plan_estimate']}, "
                          f"best survived {r['best_survived_share']:.0%}", flush=True)
    return rows


def summarise(cfg: Synth, n: int, family: str, parallelism: int, plan: dict[str, Any], warnings: list[str],
              per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    def col(k):
        return [r[k] for r in per_seed]
    full = n * cfg.epochs
    lost = [r for r in per_seed if not r["best_survived"]]
    where: dict[str, int] = {}
    for r in lost:
        where[str(r["best_lost_at_band"])] = where.get(str(r["best_lost_at_band"]), 0) + 1
    trained = col("iterations_trained")
    return {
        "config": cfg.key, "label": cfg.label, "early_terminate": cfg.early_terminate, "bands": list(cfg.bands),
        "epochs": cfg.epochs, "curves": family, "runs": n, "parallelism": parallelism, "seeds": len(per_seed),
        "full": full, "config_warnings": warnings,
        "plan_estimate": plan["with_early_termination_estimate"], "plan_runs_alive_after_band": plan["runs_alive_after_band"],
        "iterations_trained_median": median(trained), "iterations_trained_min": min(trained), "iterations_trained_max": max(trained),
        "iterations_saved_median": median(col("iterations_saved")),
        "trained_fraction_median": median([t / full for t in trained]),
        "trained_over_plan_median": median([t / plan["with_early_termination_estimate"] for t in trained]),
        "gpu_seconds_used_median": median(col("gpu_seconds_used")),
        "gpu_seconds_saved_reported_median": median(col("gpu_seconds_saved_reported")),
        "gpu_seconds_in_stopped_epochs_median": median(col("gpu_seconds_in_stopped_epochs")),
        "wall_seconds_median": median(col("wall_seconds")),
        "wall_seconds_without_early_termination_median": median(col("wall_seconds_without_early_termination")),
        "survivors_median": median(col("survivors")),
        "succeeded_median": median(col("succeeded")),
        "stopped_at_last_iteration_median": median(col("stopped_at_last_iteration")),
        "best_survived_share": sum(col("best_survived")) / len(per_seed),
        "best_lost_at_band": where,
        "best_lost_among_runs_median": median([r["best_lost_among_runs"] for r in lost]),
        "best_lost_among_at_most_3_runs": sum(1 for r in lost if r["best_lost_among_runs"] <= 3),
        "best_lost_after_passing_band": sum(1 for r in lost if r["best_lost_at_iteration"] > r["best_lost_at_band"]),
        "late_stops_median": median(col("late_stops")),
        "iterations_past_band_in_late_stops_median": median(col("iterations_past_band_in_late_stops")),
        "regret_relative_median": median(col("regret_relative")),
        "regret_relative_mean": statistics.fmean(col("regret_relative")),
        "regret_relative_median_when_lost": median([r["regret_relative"] for r in lost]),
        "regret_relative_max": max(col("regret_relative")),
        "surviving_best_rank_median": median(col("surviving_best_rank")),
        "same_budget_runs_median": median(col("same_budget_runs")),
        "same_budget_best_found_share": sum(col("same_budget_best_found")) / len(per_seed),
        "same_budget_regret_relative_median": median(col("same_budget_regret_relative")),
        "same_budget_regret_relative_mean": statistics.fmean(col("same_budget_regret_relative")),
        "spearman_first_band_vs_final_median": median(col("spearman_first_band_vs_final")),
        "per_seed": {k: col(k) for k in per_seed[0]},  # columns
    }


# -- the example sweep, for real -------------------------------------------------------------------
def read_events(path: Path) -> dict[str, list[float]]:
    curves: dict[str, list[float]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            obj = json.loads(line)
            if "state" in obj and set(obj) == {"run", "state"}:
                curves.setdefault(obj["run"], [])
                continue
            if METRIC not in obj:
                continue  # e.g. train.py's closing `done epochs=20` row
            v = obj[METRIC]  # a number, or "NaN" / "Infinity" as the runner writes non-finite values
            try:
                value = float(v)
            except (TypeError, ValueError):
                value = math.nan
            curves.setdefault(obj["run"], []).append(value)
    return curves


def epochs_from_log(path: Path) -> int | None:
    """What the run itself says it trained: `done epochs=N` or `stopping: ... after epoch N`."""
    n = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("done epochs="):
            n = int(line.split("=", 1)[1])
        elif line.startswith("stopping:") and "after epoch" in line:
            n = int(line.rsplit(" ", 1)[1])
    return n


def run_sweep(sweep: Path, workdir: Path, seed: str, run_cap: int | None) -> dict[str, Any]:
    argv = [sys.executable, "-m", "kubesweep.cli", "run", str(sweep), "--workdir", str(workdir), "--seed", seed, "--quiet"]
    if run_cap:
        argv += ["--run-cap", str(run_cap)]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600)
    wall = time.monotonic() - t0
    check(proc.returncode == 0, f"kubesweep run {sweep.name} --seed {seed} exited {proc.returncode}: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    summary = json.loads((workdir / "summary.json").read_text())
    curves = read_events(workdir / "events.jsonl")
    runs = sorted(curves)
    return {
        "summary": summary, "wall": wall, "curves": curves, "runs": runs,
        "params": {r: json.loads((workdir / r / "args.json").read_text()) for r in runs},
        "epochs_logged": {r: epochs_from_log(workdir / r / "output.log") for r in runs},
    }


def example(seeds: list[str], run_cap: int | None, tmp: Path) -> dict[str, Any]:
    doc = load_yaml(EXAMPLE.read_text())
    spec = doc["spec"]
    epochs = spec["parameters"]["epochs"]["value"]
    runs = run_cap or spec["run_cap"]
    plain_doc = json.loads(json.dumps(doc))
    del plain_doc["spec"]["early_terminate"]
    plain_doc["spec"]["program"] = str((EXAMPLE.parent / spec["program"]).resolve())
    plain = tmp / "digits-no-early-termination.yaml"
    plain.write_text(yaml.safe_dump(plain_doc, sort_keys=False))  # key order kept: the sampler draws in it
    plan = plan_estimate(EXAMPLE, runs, epochs)
    config = load(doc).config
    full = runs * epochs
    per_seed = []
    for seed in seeds:
        print(f"# example: seed {seed!r}: with early termination ...", flush=True)
        et = run_sweep(EXAMPLE, tmp / f"et-{seed}", seed, run_cap)
        print(f"# example: seed {seed!r}: without early termination ...", flush=True)
        ne = run_sweep(plain, tmp / f"full-{seed}", seed, run_cap)
        s, sn = et["summary"], ne["summary"]
        check(et["runs"] == ne["runs"] and len(et["runs"]) == runs, f"example seed {seed}: runs differ: {et['runs']} vs {ne['runs']}")
        same_params = all(et["params"][r] == ne["params"][r] for r in et["runs"])
        check(same_params, f"example seed {seed}: the two sweeps sampled different parameters")
        prefix = all(_same(et["curves"][r], ne["curves"][r][:len(et["curves"][r])]) for r in et["runs"])
        check(prefix, f"example seed {seed}: a stopped run's values differ from its full run's first values")
        finals = {r: ne["curves"][r][-1] if ne["curves"][r] else math.nan for r in ne["runs"]}
        key = {r: (finals[r] if math.isfinite(finals[r]) else math.inf) for r in finals}
        best = min(ne["runs"], key=key.__getitem__)
        # the engine's view of the recorded sweep, re-derived with `kubesweep replay`'s code
        rep = replay(config, parse_events(open(tmp / f"et-{seed}" / "events.jsonl", encoding="utf-8")))["runs"]
        check({r for r in rep if rep[r]["stopped"]} == {st["run"] for st in s["stops"]},
              f"example seed {seed}: replaying events.jsonl stops other runs than the sweep did")
        iters = {r: rep[r]["iterations"] for r in et["runs"]}
        survivors = [r for r in et["runs"] if rep[r]["state"] == SUCCEEDED or iters[r] == epochs]
        surv_best = min(survivors, key=key.__getitem__) if survivors else None
        ranked = sorted(ne["runs"], key=key.__getitem__)
        non_finite = sum(1 for r in et["runs"] for v in et["curves"][r] if not math.isfinite(v))
        non_finite_kept = sum(1 for r in et["runs"] if not rep[r]["stopped"] for v in et["curves"][r] if not math.isfinite(v))
        logged = et["epochs_logged"]
        stop_by_run = {st["run"]: st["band"] for st in s["stops"]}
        row = {
            "seed": seed, "runs": runs, "non_finite_values_in_unstopped_runs": non_finite_kept,
            "stopped": s["runs"]["EarlyStopped"], "succeeded": s["runs"]["Succeeded"], "failed": s["runs"]["Failed"],
            "iterations_trained": s["iterations_trained"], "iterations_saved": s["iterations_saved"],
            "iterations_without_early_termination": s["iterations_without_early_termination"],
            "non_finite_values": non_finite,
            "epochs_trained_per_runs_logs": sum(v or 0 for v in logged.values()),
            "epochs_trained_beyond_engine_count": sum(v or 0 for v in logged.values()) - s["iterations_trained"] - non_finite,
            "iterations_trained_without_early_termination": sn["iterations_trained"],
            "gpu_seconds_used": s["run_seconds_used"], "gpu_seconds_saved_reported": s["run_seconds_saved"],
            "gpu_seconds_used_without_early_termination": sn["run_seconds_used"],
            "gpu_seconds_saved_measured": round(sn["run_seconds_used"] - s["run_seconds_used"], 3),
            "sweep_wall_seconds": round(et["wall"], 2), "sweep_wall_seconds_without_early_termination": round(ne["wall"], 2),
            "same_parameters": same_params, "stopped_values_are_prefixes": prefix,
            "best_final_run": best, "best_final": finals[best], "best_final_parameters": ne["params"][best],
            "best_survived": best in survivors, "best_lost_at_band": stop_by_run.get(best),
            "best_lost_among_runs": (rep[best]["stopped"] or {}).get("runs_at_band"),
            "best_lost_reason": (rep[best]["stopped"] or {}).get("reason"),
            "best_lost_at_iteration": (rep[best]["stopped"] or {}).get("iteration"),
            "late_stops": sum(1 for r in et["runs"] if rep[r]["stopped"] and rep[r]["stopped"]["iteration"] > rep[r]["stopped"]["band"]),
            "surviving_best_run": surv_best, "surviving_best_final": None if surv_best is None else finals[surv_best],
            "regret": None if surv_best is None else round(finals[surv_best] - finals[best], 6),
            "surviving_best_rank": None if surv_best is None else ranked.index(surv_best) + 1,
            "reported_best_run": (s["best"] or {}).get("run"), "reported_best_value": (s["best"] or {}).get("value"),
            "reported_best_final": None if not s["best"] else finals[s["best"]["run"]],
            "best_run_without_early_termination_reported": (sn["best"] or {}).get("run"),
            "finals": finals, "iterations_per_run": iters, "epochs_logged_per_run": logged,
        }
        per_seed.append(row)
        # a non-finite value is no iteration: in a run that ends on its own it is neither trained nor saved
        check(s["iterations_trained"] + s["iterations_saved"] + non_finite_kept == full,
              f"example seed {seed}: trained {s['iterations_trained']} + saved {s['iterations_saved']} + non-finite "
              f"values of unstopped runs {non_finite_kept} != {full}")
        check(s["runs"]["EarlyStopped"] + s["runs"]["Succeeded"] + s["runs"]["Failed"] == runs,
              f"example seed {seed}: runs by state do not add up to {runs}")
        print(f"# example seed {seed!r}: trained {s['iterations_trained']} of {full} (plan "
              f"{plan['with_early_termination_estimate']}), best final {best} "
              f"{'survived' if row['best_survived'] else 'LOST at band ' + str(row['best_lost_at_band'])}", flush=True)
    return {"sweep": str(EXAMPLE.relative_to(ROOT)), "runs": runs, "epochs": epochs, "full": full,
            "plan_estimate": plan["with_early_termination_estimate"], "plan_runs_alive_after_band": plan["runs_alive_after_band"],
            "bands": plan["bands"], "per_seed": per_seed,
            "best_survived_share": sum(r["best_survived"] for r in per_seed) / len(per_seed) if per_seed else None}


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


# -- output ----------------------------------------------------------------------------------------
def fmt(x, nd=0, pct=False):
    if x is None:
        return "–"
    if pct:
        return f"{x * 100:.{nd}f}%"
    return f"{x:,.{nd}f}"


def markdown_synthetic(rows: list[dict[str, Any]]) -> str:
    seeds = rows[0]["seeds"] if rows else 0
    out = [f"Parallelism {rows[0]['parallelism'] if rows else '–'}, 1 GPU and 1 s per epoch; medians over {seeds} "
           "seeds ([min–max] for iterations). *plan* = `kubesweep plan --json --runs N --iterations T` "
           "(with_early_termination_estimate). *GPU-s used*: exact slot time, i.e. the iterations trained plus "
           "the part of an epoch each stopped run was in when the stop came; *saved (reported)*: what the engine "
           "reports (`run_usage`). *stopped at T*: runs marked EarlyStopped at their last epoch (judged at band "
           "T, nothing saved). *late stops*: runs stopped after they had passed the band they were stopped for (a "
           "later run's value there moved the threshold), and the iterations they trained past that band. *wall*: the sweep's wall-clock with / without early termination.", "",
           "| config | bands | T | curves | N | N×T | plan | iterations trained | of N×T | trained ÷ plan | GPU-s used | "
           "GPU-s saved (reported) | succeeded / stopped at T | late stops (iterations past the band) | wall s with / without |",
           "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(
            f"| ({r['config']}) {r['label']} | {', '.join(map(str, r['bands']))} | {r['epochs']} | {r['curves']} | {r['runs']} | "
            f"{r['full']:,} | {r['plan_estimate']:,} | {fmt(r['iterations_trained_median'])} "
            f"[{r['iterations_trained_min']:,}–{r['iterations_trained_max']:,}] | {fmt(r['trained_fraction_median'], 0, True)} | "
            f"{r['trained_over_plan_median']:.2f} | {fmt(r['gpu_seconds_used_median'])} | "
            f"{fmt(r['gpu_seconds_saved_reported_median'])} | {fmt(r['succeeded_median'])} / "
            f"{fmt(r['stopped_at_last_iteration_median'])} | {fmt(r['late_stops_median'])} "
            f"({fmt(r['iterations_past_band_in_late_stops_median'])}) | {fmt(r['wall_seconds_median'])} / "
            f"{fmt(r['wall_seconds_without_early_termination_median'])} |")
    out += ["", "Did the best run survive? *best* = the best FINAL value (epoch T) of all N curves, stopped or not; "
            "it survived if it trained all T epochs. *regret* = best surviving final ÷ best final − 1: median and "
            "mean over all seeds, median over the seeds where the best was lost, worst seed. *rank*: the best "
            "survivor's rank among all N by final value. *same GPU-s, no ET*: instead, the first ⌊GPU-s used ÷ T⌋ "
            "runs trained to the end (runs are i.i.d., so a random subset): how many, best found, regret median / "
            "mean. *after passing it*: it had passed that band and trained on, then a later run's value at the "
            "band moved the threshold past its own (W&B re-evaluates every report). *lost among runs*: how many runs' values at that band set the threshold that stopped it (≤ 3: "
            "it was judged against at most two other runs). *ρ*: Spearman's rank correlation between the value at the first band and the final value.", "",
            "| config | curves | N | best survived | lost at band (seeds) | of which after passing it | lost among runs, median (seeds ≤ 3) | regret median / mean | when lost | worst | "
            "rank of best survivor | survivors | same GPU-s, no ET: runs / best found / regret median / mean | ρ |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        where = ", ".join(f"{b}: {c}" for b, c in sorted(r["best_lost_at_band"].items(), key=lambda kv: int(kv[0]))) or "–"
        out.append(
            f"| ({r['config']}) | {r['curves']} | {r['runs']} | {fmt(r['best_survived_share'], 0, True)} | {where} | "
            f"{r['best_lost_after_passing_band']} | {fmt(r['best_lost_among_runs_median'])} ({r['best_lost_among_at_most_3_runs']}) | "
            f"{fmt(r['regret_relative_median'], 1, True)} / {fmt(r['regret_relative_mean'], 1, True)} | "
            f"{fmt(r['regret_relative_median_when_lost'], 1, True)} | {fmt(r['regret_relative_max'], 0, True)} | "
            f"{fmt(r['surviving_best_rank_median'], 1)} | {fmt(r['survivors_median'], 1)} | "
            f"{fmt(r['same_budget_runs_median'])} / {fmt(r['same_budget_best_found_share'], 0, True)} / "
            f"{fmt(r['same_budget_regret_relative_median'], 1, True)} / {fmt(r['same_budget_regret_relative_mean'], 1, True)} | "
            f"{r['spearman_first_band_vs_final_median']:.2f} |")
    return "\n".join(out)


def markdown_parallelism(rows: list[dict[str, Any]]) -> str:
    seeds = rows[0]["seeds"] if rows else 0
    out = [f"The same sweeps at other parallelism ({rows[0]['curves'] if rows else ''} curves; medians over {seeds} "
           "seeds): how the lockstep estimate holds up, and the wall-clock.", "",
           "| config | N | P | plan | iterations trained | trained ÷ plan | best survived | wall s with / without |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["config"], r["runs"], r["parallelism"])):
        out.append(f"| ({r['config']}) | {r['runs']} | {r['parallelism']} | {r['plan_estimate']:,} | "
                   f"{fmt(r['iterations_trained_median'])} | {r['trained_over_plan_median']:.2f} | "
                   f"{fmt(r['best_survived_share'], 0, True)} | {fmt(r['wall_seconds_median'])} / "
                   f"{fmt(r['wall_seconds_without_early_termination_median'])} |")
    return "\n".join(out)


def markdown_example(ex: dict[str, Any]) -> str:
    out = [f"`{ex['sweep']}`: {ex['runs']} runs × {ex['epochs']} epochs (N×T = {ex['full']}), bands "
           f"{', '.join(map(str, ex['bands']))}, parallelism 3, each seed run twice: as is, and from a copy without "
           f"`early_terminate` (same parameters). `kubesweep plan --runs {ex['runs']} --iterations {ex['epochs']}` "
           f"estimates {ex['plan_estimate']} iterations. *GPU-s* = run-seconds with 1 GPU per run (the summary's "
           "run_seconds_used: process start-up included); *measured saved* = without − with; *reported saved* = the "
           "engine's estimate (iterations saved × each run's own pace, start-up excluded). *best* = best final "
           "val_loss (epoch 20) of the sweep without early termination; *reported best* = the run `kubesweep run` "
           "names as best (best value at any epoch), with its final value. *late stops*: runs stopped after passing "
           "the band they were stopped for.", "",
           "| seed | stopped / succeeded | iterations trained (epochs per runs' logs) | of N×T | trained ÷ plan | "
           "GPU-s with / without ET | GPU-s saved measured / reported | wall s with / without | best (final) | "
           "survived | best survivor (final, rank) | late stops | regret | reported best (final) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---|"]
    for r in ex["per_seed"]:
        fate = "yes" if r["best_survived"] else (
            f"no: band {r['best_lost_at_band']} ({r['best_lost_among_runs']} runs there), stopped at epoch "
            f"{r['best_lost_at_iteration']}")
        surv = "–" if r["surviving_best_run"] is None else (
            f"{r['surviving_best_run']} ({r['surviving_best_final']:.4f}, #{r['surviving_best_rank']})")
        out.append(
            f"| {r['seed']} | {r['stopped']} / {r['succeeded']} | {r['iterations_trained']} ({r['epochs_trained_per_runs_logs']}) | "
            f"{r['iterations_trained'] / ex['full']:.0%} | {r['iterations_trained'] / ex['plan_estimate']:.2f} | "
            f"{r['gpu_seconds_used']:.1f} / {r['gpu_seconds_used_without_early_termination']:.1f} | "
            f"{r['gpu_seconds_saved_measured']:.1f} / {r['gpu_seconds_saved_reported']:.1f} | "
            f"{r['sweep_wall_seconds']:.1f} / {r['sweep_wall_seconds_without_early_termination']:.1f} | "
            f"{r['best_final_run']} ({r['best_final']:.4f}) | "
            f"{fate} | {surv} | {r['late_stops']} | "
            f"{fmt(r['regret'] if r['regret'] is None else r['regret'] / r['best_final'], 1, True)} | "
            f"{r['reported_best_run']} ({fmt(r['reported_best_final'], 4)}) |")
    return "\n".join(out)




def dumps(obj: Any, indent: int = 0) -> str:
    """JSON with one key per line, but lists of plain values (per-seed columns) on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in obj):
            return json.dumps(list(obj))
        return "[\n" + ",\n".join(inner + dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3 seeds, N = 30, parallelism 1 and 10; example 1 seed with 6 runs; no JSON unless --json")
    ap.add_argument("--seeds", type=int, default=None, help="synthetic seeds (default 100; 3 with --quick)")
    ap.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")), default=None,
                    help="comma-separated synthetic run counts (default 50,200; 30 with --quick)")
    ap.add_argument("--parallelism", type=int, default=PARALLELISM, help=f"synthetic runs at once (default {PARALLELISM})")
    ap.add_argument("--example-seeds", default=None,
                    help="comma-separated --seed values for the example sweep (default kubesweep,seed-1,seed-2; "
                         "kubesweep with --quick); empty: skip the example")
    ap.add_argument("--example-run-cap", type=int, default=None, help="runs of the example sweep (default its run_cap 18; 6 with --quick)")
    ap.add_argument("--json", type=Path, default=None, help="where to write results (default results/savings.json; none with --quick)")
    args = ap.parse_args(argv)

    seeds = args.seeds or (3 if args.quick else 100)
    sizes = args.sizes or ((30,) if args.quick else (50, 200))
    other_p = tuple(p for p in ((1,) if args.quick else PARALLELISM_SWEEP) if p != args.parallelism)
    ex_seeds = args.example_seeds if args.example_seeds is not None else ("kubesweep" if args.quick else "kubesweep,seed-1,seed-2")
    ex_seeds_list = [s for s in ex_seeds.split(",") if s]
    ex_cap = args.example_run_cap or (6 if args.quick else None)
    json_path = args.json if args.json is not None else (None if args.quick else HERE / "results" / "savings.json")
    started = time.time()
    print(f"# savings benchmark: synthetic {seeds} seeds, N {sizes}, parallelism {args.parallelism} (and {other_p}); "
          f"example seeds {ex_seeds_list or 'none'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kubesweep-savings-") as tmpdir:
        tmp = Path(tmpdir)
        ex = example(ex_seeds_list, ex_cap, tmp) if ex_seeds_list else None
        rows = synthetic(sizes, seeds, (args.parallelism,), tuple(FAMILIES), tmp, "synthetic")
        prow = synthetic(sizes, seeds, other_p, ("mixed",), tmp, "parallelism")
    for r in prow:
        del r["per_seed"]  # summaries only: the JSON stays small
    prow += [r for r in rows if r["curves"] == "mixed"]
    print()
    if ex is not None:
        print("### Example sweep\n")
        print(markdown_example(ex))
        print()
    print("### Synthetic sweeps\n")
    print(markdown_synthetic(rows))
    print()
    print(markdown_parallelism(prow))
    print()
    result = {
        "machine": machine(), "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *(sys.argv if argv is None else [__file__, *argv])]),
        "settings": {"seeds": seeds, "sizes": sizes, "parallelism": args.parallelism, "other_parallelism": other_p,
                     "noise": NOISE, "broken_share": BROKEN, "families_tied_share": FAMILIES,
                     "example_seeds": ex_seeds_list, "example_run_cap": ex_cap},
        "consistent": not FAILURES, "failures": FAILURES,
        "example": ex, "synthetic": rows,
        "parallelism": [r for r in prow if r["parallelism"] != args.parallelism],  # without per-seed columns
        "benchmark_seconds": round(time.time() - started, 1),
    }
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(dumps(result) + "\n")
        print(f"wrote {json_path}")
    print(f"# {'all consistency checks passed' if not FAILURES else f'{len(FAILURES)} CHECKS FAILED'}; "
          f"{time.time() - started:.0f} s")
    return 0 if not FAILURES else 1


if __name__ == "__main__":
    sys.exit(main())
