#!/usr/bin/env python3
"""Benchmark: the incremental Hyperband engine against the published rule recomputed from scratch.

Replays interleaved histories of N runs x 50 iterations (N = 100, 1,000, 10,000) through
(a) `kubesweep.engine.hyperband.Hyperband` and (b) `kubesweep.engine.reference.runs_to_stop`
called after every event with all histories so far, and checks that both stop the same runs
after the same events.

The stream is a recorded sweep replayed, as `kubesweep replay` does: P agents (parallelism) each
run one run after another; a run starts when its agent frees up, after a start-up delay, and
reports one value per step at its own pace with per-step jitter; about 3% of runs crash early;
every run ends with an end event. Since the sweep was recorded without early termination, rows of
runs the rule has already stopped still arrive: the engine ignores them (as the tracker does), and
the recompute is not called for them (nothing changed, so its answer cannot change). An event is
"live" when it changes the state: a row of a running run, or the end of a running run.

    .venv/bin/python benchmarks/engine_bench.py              # full run, writes results/engine.json
    .venv/bin/python benchmarks/engine_bench.py --quick      # smoke run, a few seconds

Pure Python (no numpy). Timings: every timing is repeated (`--repeats`, default 5) with the
repeats interleaved over sizes and configurations, and medians are reported; ratios (speed-up,
growth per 10x runs) are taken within each repeat and then their median.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import heapq
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
try:
    import kubesweep  # noqa: F401
except ImportError:  # run with a python that lacks the editable install
    sys.path.insert(0, str(ROOT / "operator"))

from kubesweep.engine.bands import HyperbandRule  # noqa: E402
from kubesweep.engine.hyperband import Hyperband  # noqa: E402
from kubesweep.engine.reference import runs_to_stop  # noqa: E402
from machine import machine  # noqa: E402 - benchmarks/ is on sys.path when run as a script

ITERATIONS = 50
EARLY_END_FRACTION = 0.03
DEFAULT_SIZES = (100, 1_000, 10_000)
QUICK_SIZES = (60, 200, 600)

RULES = {
    "min_iter=1 eta=3": (HyperbandRule(min_iter=1, eta=3.0), "1,3,9,27"),
    "max_iter=50 s=3 eta=3": (HyperbandRule(max_iter=50, s=3, eta=3.0), "1,5,16"),
}


@dataclass(frozen=True)
class Config:
    rule_name: str
    strict: bool
    maximize: bool

    @property
    def rule(self) -> HyperbandRule:
        base, _ = RULES[self.rule_name]
        return HyperbandRule(eta=base.eta, strict=self.strict, min_iter=base.min_iter, max_iter=base.max_iter, s=base.s)

    @property
    def bands(self) -> str:
        return RULES[self.rule_name][1]

    @property
    def label(self) -> str:
        return f"{self.rule_name} {'strict' if self.strict else 'non-strict'} {'max' if self.maximize else 'min'}"

    def as_dict(self) -> dict:
        return {"rule": self.rule_name, "bands": self.bands, "strict": self.strict,
                "goal": "maximize" if self.maximize else "minimize"}


CONFIGS = [Config(r, s, m) for r in RULES for s in (True, False) for m in (False, True)]


# -- the event stream -------------------------------------------------------------------------------
def make_stream(n_runs: int, maximize: bool, parallel: int, seed: int) -> list[tuple[str, float | None]]:
    """Events in arrival order: (run, value) is one history row, (run, None) ends the run."""
    rng = random.Random(f"engine-bench/{seed}/{n_runs}/{int(maximize)}")
    agents = [(rng.uniform(0.0, 2.0), a) for a in range(parallel)]  # the first wave starts together
    heapq.heapify(agents)
    timed: list[tuple[float, str, float | None]] = []
    for i in range(n_runs):
        free_at, agent = heapq.heappop(agents)
        start = free_at + rng.uniform(0.5, 3.0)  # scheduling and start-up jitter
        pace = rng.uniform(0.7, 1.4)  # seconds per iteration: parallel runs drift apart
        length = ITERATIONS if rng.random() >= EARLY_END_FRACTION else rng.randint(2, ITERATIONS - 1)
        tau = rng.uniform(2.0, 25.0)
        noise = rng.uniform(0.005, 0.03)
        if maximize:  # accuracy-like, rising
            top, low = rng.uniform(0.55, 0.99), rng.uniform(0.05, 0.3)
            curve = lambda k: top - (top - low) * math.exp(-k / tau)  # noqa: E731
        else:  # loss-like, falling; a few runs never learn
            floor = rng.uniform(0.05, 0.8) if rng.random() > 0.05 else rng.uniform(1.5, 2.5)
            high = floor + rng.uniform(0.3, 2.0)
            curve = lambda k: floor + (high - floor) * math.exp(-k / tau)  # noqa: E731
        name = f"run-{i:05d}"
        for k in range(length):
            # k + 1 + jitter in [0, 0.8): each run's own rows stay in order
            at = start + pace * (k + 1 + rng.uniform(0.0, 0.8))
            timed.append((at, name, round(curve(k) + rng.gauss(0.0, noise), 4)))  # 4 decimals: some ties
        end_at = start + pace * (length + 1)
        timed.append((end_at, name, None))
        heapq.heappush(agents, (end_at, agent))
    timed.sort(key=lambda e: e[0])
    return [(name, value) for _, name, value in timed]


# -- decisions ---------------------------------------------------------------------------------------
def engine_key(decisions) -> tuple:
    return tuple(sorted((d.run, d.band, d.value, d.threshold) for d in decisions))


def reference_key(stops: dict) -> tuple:
    return tuple(sorted((run, b, v, t) for run, (b, v, t) in stops.items()))


KINDS = ("ignored", "row", "band", "stop", "end")  # what an event does, for the cost breakdown


def classify(events, stop_log, bands: list[int]) -> tuple[list[int], list[int]]:
    """Given which runs were stopped after which event: the live events (those that change the
    state) and each event's kind, as an index into KINDS."""
    stopped_after: dict[int, tuple] = dict(stop_log)
    band_set = set(bands)
    dead: set[str] = set()
    counts: dict[str, int] = {}
    live, kinds = [], [0] * len(events)
    for i, (run, value) in enumerate(events):
        if run in dead:
            continue
        live.append(i)
        if value is None:
            dead.add(run)
            kinds[i] = 4
        else:
            c = counts[run] = counts.get(run, 0) + 1
            kinds[i] = 3 if i in stopped_after else 2 if c in band_set else 1
        for d in stopped_after.get(i, ()):
            dead.add(d[0])
    return live, kinds


# -- passes ------------------------------------------------------------------------------------------
def engine_throughput(cfg: Config, events) -> tuple[float, list]:
    """The replay as a controller runs it: no per-event timer. Returns (seconds, stop log)."""
    hb = Hyperband(cfg.rule, "m", cfg.maximize)
    report, end = hb.report, hb.end
    log = []
    gc.collect()
    t0 = time.perf_counter()
    for i, (run, value) in enumerate(events):
        if value is None:
            end(run)
        else:
            out = report(run, value)
            if out:
                log.append((i, out))
    seconds = time.perf_counter() - t0
    return seconds, [(i, engine_key(out)) for i, out in log]


def engine_latency(cfg: Config, events) -> list[int]:
    """Nanoseconds per event (timer overhead included)."""
    hb = Hyperband(cfg.rule, "m", cfg.maximize)
    report, end, clock = hb.report, hb.end, time.perf_counter_ns
    times = [0] * len(events)
    gc.collect()
    for i, (run, value) in enumerate(events):
        if value is None:
            t0 = clock()
            end(run)
            times[i] = clock() - t0
        else:
            t0 = clock()
            report(run, value)
            times[i] = clock() - t0
    return times


def recompute_full(cfg: Config, events) -> tuple[list[int], list]:
    """The published rule after every live event, driven by its own decisions.
    Returns (ns per live event, stop log)."""
    rule, maximize = cfg.rule, cfg.maximize
    histories: dict[str, list[float]] = {}
    running: set[str] = set()
    dead: set[str] = set()
    times, log = [], []
    clock = time.perf_counter_ns
    gc.collect()
    for i, (run, value) in enumerate(events):
        if run in dead:
            continue  # a stopped or ended run: nothing changes, the answer cannot change
        if value is None:
            running.discard(run)
            dead.add(run)
        else:
            histories.setdefault(run, []).append(value)
            running.add(run)
        t0 = clock()
        stops = runs_to_stop(rule, maximize, histories, running)
        times.append(clock() - t0)
        if stops:
            log.append((i, reference_key(stops)))
            running.difference_update(stops)
            dead.update(stops)
    return times, log


def recompute_sampled(cfg: Config, events, sample: set[int]) -> tuple[list[int], int]:
    """The engine drives the replay; at the sampled live events the published rule is evaluated
    on the same state, timed, and compared with the engine's decision at that event.
    Returns (ns per sampled event, how many sampled events agreed)."""
    rule, maximize = cfg.rule, cfg.maximize
    hb = Hyperband(rule, "m", maximize)
    histories: dict[str, list[float]] = {}
    running: set[str] = set()
    dead: set[str] = set()
    times, agreed = [], 0
    clock = time.perf_counter_ns
    gc.collect()
    for i, (run, value) in enumerate(events):
        if value is None:
            hb.end(run)
            out = []
        else:
            out = hb.report(run, value)
        if run in dead:
            continue
        if value is None:
            running.discard(run)
            dead.add(run)
        else:
            histories.setdefault(run, []).append(value)
            running.add(run)
        if i in sample:
            t0 = clock()
            stops = runs_to_stop(rule, maximize, histories, running)
            times.append(clock() - t0)
            if reference_key(stops) != engine_key(out):
                fail(f"{cfg.label}: event {i} ({run}, {value}): engine {engine_key(out)} vs rule {reference_key(stops)}")
            agreed += 1
        for d in out:
            running.discard(d.run)
            dead.add(d.run)
    return times, agreed


def fail(msg: str) -> None:
    print(f"DECISIONS DIFFER: {msg}", flush=True)
    sys.exit(2)


def first_difference(a: list, b: list) -> str:
    for x, y in zip(a, b):
        if x != y:
            return f"engine {x} vs rule {y}"
    return f"engine has {len(a)} stop events, rule {len(b)}"


# -- memory (in a fresh interpreter, so maxrss is this replay's own) ---------------------------------
def vm_hwm_kib() -> int | None:
    """This process's own peak RSS (per address space: unlike ru_maxrss, not carried over from the
    parent through fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_child(spec: dict) -> dict:
    cfg = Config(spec["rule"], spec["strict"], spec["maximize"])
    events = make_stream(spec["n"], cfg.maximize, spec["parallel"], spec["seed"])
    gc.collect()
    rss_before, hwm_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, vm_hwm_kib()
    hb = Hyperband(cfg.rule, "m", cfg.maximize)
    for run, value in events:
        hb.end(run) if value is None else hb.report(run, value)
    rss_after, hwm_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, vm_hwm_kib()
    del hb
    gc.collect()
    tracemalloc.start()
    hb = Hyperband(cfg.rule, "m", cfg.maximize)
    for run, value in events:
        hb.end(run) if value is None else hb.report(run, value)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"maxrss_before_kib": rss_before, "maxrss_kib": rss_after,
            "vmhwm_before_kib": hwm_before, "vmhwm_kib": hwm_after,
            "tracemalloc_peak_bytes": peak, "tracemalloc_retained_bytes": current}


def measure_memory(n: int, cfg: Config, parallel: int, seed: int) -> dict:
    spec = {"n": n, "rule": cfg.rule_name, "strict": cfg.strict, "maximize": cfg.maximize,
            "parallel": parallel, "seed": seed}
    out = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(spec)],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- statistics --------------------------------------------------------------------------------------
def pct(sorted_vals: list, q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return math.nan
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q / 100 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def summarize_ns(ns: list[int]) -> dict:
    s = sorted(ns)
    return {"mean_us": statistics.fmean(s) / 1e3, "p50_us": pct(s, 50) / 1e3, "p99_us": pct(s, 99) / 1e3}


def med(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else None


def timer_overhead_ns() -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(200_000):
        t0 = clock()
        samples.append(clock() - t0)
    return statistics.median(samples)




# -- main --------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"smoke run: sizes {QUICK_SIZES}, 1 repeat, no JSON unless --json")
    ap.add_argument("--repeats", type=int, default=None, help="timing repeats (default 5; 1 with --quick)")
    ap.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")), default=None,
                    help="comma-separated run counts (default 100,1000,10000)")
    ap.add_argument("--full-recompute-max", type=int, default=None,
                    help="largest N for which the recompute runs over every event (default 1000; 200 with --quick)")
    ap.add_argument("--samples", type=int, default=None, help="sampled events for the recompute above that N (default 150)")
    ap.add_argument("--parallel", type=int, default=20, help="runs in flight at once (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="where to write results (default results/engine.json; none with --quick)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return 0

    repeats = args.repeats or (1 if args.quick else 5)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    full_max = args.full_recompute_max if args.full_recompute_max is not None else (200 if args.quick else 1000)
    n_samples = args.samples or (40 if args.quick else 150)
    json_path = args.json if args.json is not None else (None if args.quick else HERE / "results" / "engine.json")
    started = time.time()
    timer_ns = timer_overhead_ns()
    print(f"# engine benchmark: sizes {sizes}, {repeats} repeat(s), parallelism {args.parallel}, "
          f"{ITERATIONS} iterations, recompute in full up to N={full_max}, timer overhead {timer_ns:.0f} ns", flush=True)

    # memory first, while this process is small: a child's ru_maxrss starts at its parent's RSS
    memory = {}
    if not args.no_memory:
        for n in sizes:
            for cfg in CONFIGS:
                memory[n, cfg] = measure_memory(n, cfg, args.parallel, args.seed)

    streams = {}
    for n in sizes:
        for maximize in (False, True):
            streams[n, maximize] = make_stream(n, maximize, args.parallel, args.seed)

    # per (n, config): lists over repeats
    raw: dict[tuple[int, Config], dict[str, list]] = {
        (n, c): {k: [] for k in ("engine_s", "live_mean_us", "live_p50_us", "live_p99_us", "all_p50_us", "all_p99_us",
                                 "recompute_s", "recompute_mean_us", "recompute_p50_us", "recompute_p99_us", "speedup",
                                 "speedup_per_live_event", "engine_live_only_s")} | {"kind_mean_us": {}, "kind_count": {}}
        for n in sizes for c in CONFIGS}
    info: dict[tuple[int, Config], dict] = {}
    for rep in range(repeats):
        for n in sizes:
            for cfg in CONFIGS:
                events = streams[n, cfg.maximize]
                r = raw[n, cfg]
                seconds, elog = engine_throughput(cfg, events)
                live, kinds = classify(events, elog, cfg.rule.bands_up_to(ITERATIONS))
                live_only = [events[i] for i in live]  # what a live controller sees: stopped runs stop reporting
                live_s, llog = engine_throughput(cfg, live_only)
                if [k for _, k in llog] != [k for _, k in elog]:
                    fail(f"{cfg.label}, N={n}: the live-only replay stops other runs than the full replay")
                r["engine_live_only_s"].append(live_s)
                ns = engine_latency(cfg, events)
                by_kind: dict[int, list[int]] = {}
                for t, k in zip(ns, kinds):
                    by_kind.setdefault(k, []).append(t)
                for k, name in enumerate(KINDS):
                    r["kind_mean_us"].setdefault(name, []).append(statistics.fmean(by_kind[k]) / 1e3 if k in by_kind else None)
                    r["kind_count"][name] = len(by_kind.get(k, ()))
                live_ns = sorted(ns[i] for i in live)
                all_ns = sorted(ns)
                r["engine_s"].append(seconds)
                r["live_mean_us"].append(statistics.fmean(live_ns) / 1e3)
                r["live_p50_us"].append(pct(live_ns, 50) / 1e3)
                r["live_p99_us"].append(pct(live_ns, 99) / 1e3)
                r["all_p50_us"].append(pct(all_ns, 50) / 1e3)
                r["all_p99_us"].append(pct(all_ns, 99) / 1e3)
                key = info.setdefault((n, cfg), {
                    "events": len(events), "live_events": len(live), "stops": sum(len(s) for _, s in elog),
                    "stop_events": len(elog), "rows": sum(v is not None for _, v in events)})
                if n <= full_max:
                    rns, rlog = recompute_full(cfg, events)
                    if rlog != elog:
                        fail(f"{cfg.label}, N={n}: {first_difference(elog, rlog)}")
                    if len(rns) != len(live):
                        fail(f"{cfg.label}, N={n}: {len(rns)} recomputes for {len(live)} live events")
                    key["compared"] = "full"
                    key["compared_events"] = len(rns)
                    total = sum(rns) / 1e9
                    estimated = False
                else:
                    stride = max(1, len(live) // n_samples)
                    sample = set(live[stride // 2::stride][:n_samples])
                    rns, agreed = recompute_sampled(cfg, events, sample)
                    key["compared"] = "sampled"
                    key["compared_events"] = agreed
                    total = statistics.fmean(rns) / 1e9 * len(live)  # estimate over every live event
                    estimated = True
                rs = summarize_ns(rns)
                key["recompute_estimated"] = estimated
                r["recompute_s"].append(total)
                r["recompute_mean_us"].append(rs["mean_us"])
                r["recompute_p50_us"].append(rs["p50_us"])
                r["recompute_p99_us"].append(rs["p99_us"])
                r["speedup"].append(total / seconds)
                r["speedup_per_live_event"].append(rs["mean_us"] / (live_s / len(live) * 1e6))
                print(f"  repeat {rep + 1}/{repeats} N={n:>6} {cfg.label:<38} engine {seconds * 1e3:8.1f} ms  "
                      f"live {r['live_mean_us'][-1]:6.2f} us/event  recompute{'~' if estimated else ' '}"
                      f"{total:8.2f} s  x{total / seconds:,.0f}", flush=True)

    rows = []
    for n in sizes:
        for cfg in CONFIGS:
            r, key = raw[n, cfg], info[n, cfg]
            eng_s = med(r["engine_s"])
            row = {"n": n, **cfg.as_dict(), **key,
                   "engine": {"seconds": eng_s, "events_per_s": key["events"] / eng_s,
                              "mean_us_all": eng_s / key["events"] * 1e6,
                              "live_events_per_s": key["live_events"] / eng_s,
                              "live_only_seconds": med(r["engine_live_only_s"]),
                              "live_only_mean_us": med([t / key["live_events"] * 1e6 for t in r["engine_live_only_s"]]),
                              "live_mean_us": med(r["live_mean_us"]), "live_p50_us": med(r["live_p50_us"]),
                              "live_p99_us": med(r["live_p99_us"]), "all_p50_us": med(r["all_p50_us"]),
                              "all_p99_us": med(r["all_p99_us"]),
                              "seconds_per_repeat": r["engine_s"]},
                   "recompute": {"seconds": med(r["recompute_s"]), "estimated": key["recompute_estimated"],
                                 "mean_us": med(r["recompute_mean_us"]), "p50_us": med(r["recompute_p50_us"]),
                                 "p99_us": med(r["recompute_p99_us"]), "seconds_per_repeat": r["recompute_s"]},
                   "speedup": med(r["speedup"]), "speedup_per_live_event": med(r["speedup_per_live_event"]),
                   "engine_by_kind": {k: {"events": r["kind_count"][k], "mean_us": med(r["kind_mean_us"][k])} for k in KINDS}}
            if (n, cfg) in memory:
                m = memory[n, cfg]
                row["memory"] = {"tracemalloc_peak_mib": m["tracemalloc_peak_bytes"] / 2**20,
                                 "tracemalloc_retained_mib": m["tracemalloc_retained_bytes"] / 2**20,
                                 "maxrss_mib": m["maxrss_kib"] / 1024,
                                 "maxrss_before_engine_mib": m["maxrss_before_kib"] / 1024,
                                 "vmhwm_mib": m["vmhwm_kib"] / 1024 if m["vmhwm_kib"] else None,
                                 "vmhwm_before_engine_mib": m["vmhwm_before_kib"] / 1024 if m["vmhwm_before_kib"] else None}
            rows.append(row)

    # growth per 10x runs, within each repeat, then the median
    for n in sizes:
        for cfg in CONFIGS:
            raw[n, cfg]["live_only_us"] = [t / info[n, cfg]["live_events"] * 1e6 for t in raw[n, cfg]["engine_live_only_s"]]
    growth = []
    for cfg in CONFIGS:
        g = {**cfg.as_dict(), "steps": []}
        for a, b in zip(sizes, sizes[1:]):
            step = {"from": a, "to": b}
            for metric in ("live_only_us", "live_mean_us", "live_p50_us", "recompute_mean_us"):
                per_rep = [y / x for x, y in zip(raw[a, cfg][metric], raw[b, cfg][metric])]
                # normalise to a factor per 10x runs
                step[metric + "_ratio_per_10x"] = med([q ** (1 / math.log10(b / a)) for q in per_rep])
            g["steps"].append(step)
        lo, hi = sizes[0], sizes[-1]
        for metric in ("live_only_us", "live_mean_us", "live_p50_us", "recompute_mean_us"):
            exps = [math.log(y / x) / math.log(hi / lo) for x, y in zip(raw[lo, cfg][metric], raw[hi, cfg][metric])]
            g[metric + "_exponent"] = med(exps)  # cost ~ N^exponent; 0 = flat, 1 = linear
        growth.append(g)

    verdict = all(row["compared_events"] > 0 for row in rows)
    full_rows = [row for row in rows if row["compared"] == "full"]
    sampled_rows = [row for row in rows if row["compared"] == "sampled"]

    print()
    print(markdown(rows, growth, sizes, repeats))
    print()
    print(f"Decisions identical: engine and recompute stopped the same runs after the same events in all "
          f"{len(full_rows)} fully compared replays ({sum(r['compared_events'] for r in full_rows):,} live events)"
          + (f" and at all {sum(r['compared_events'] for r in sampled_rows):,} sampled events of the "
             f"{len(sampled_rows)} larger replays" if sampled_rows else "") + ".")
    assert verdict

    result = {"machine": machine(), "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "settings": {"sizes": sizes, "repeats": repeats, "parallel": args.parallel, "iterations": ITERATIONS,
                           "early_end_fraction": EARLY_END_FRACTION, "seed": args.seed,
                           "full_recompute_max": full_max, "samples": n_samples, "timer_overhead_ns": timer_ns},
              "decisions_identical": True, "rows": rows, "growth": growth,
              "benchmark_seconds": time.time() - started}
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {json_path}")
    return 0


def markdown(rows, growth, sizes, repeats) -> str:
    def f(x, nd=1):
        return "–" if x is None else f"{x:,.{nd}f}"

    out = [f"Medians of {repeats} repeat(s). *events* = the whole replay (N × ≤50 rows + N ends); *live* events "
           "change the state (rows and ends of running runs); the rest are rows of runs already stopped, which "
           "the engine ignores. *engine events/s* and *replay s*: the whole replay, no per-event timer. "
           "*engine µs/live event*: a replay of the live events alone (what a live controller sees), no timer. "
           "*timed mean / p50 / p99*: each live event timed on its own (timer included). *recompute µs*: per "
           "live event (`~` = estimated from a sample of events). *speed-up, replay* = recompute total / engine "
           "whole-replay time (the engine also pays for the ignored rows, the recompute is not called for "
           "them); *per live event* = recompute µs / engine µs per live event. Memory: a fresh process per row; "
           "tracemalloc peak = the engine alone; maxrss = that process (interpreter + event stream + engine).",
           "",
           "| N | rule (bands) | strict | goal | events | live | stopped | engine events/s | replay s "
           "| engine µs/live event | timed mean | p50 | p99 | recompute µs mean | speed-up, replay | per live event "
           "| tracemalloc peak MiB | maxrss MiB |",
           "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        e, rc, m = r["engine"], r["recompute"], r.get("memory", {})
        est = "~" if rc["estimated"] else ""
        out.append(
            f"| {r['n']:,} | {r['rule']} ({r['bands']}) | {'yes' if r['strict'] else 'no'} | {r['goal'][:3]} "
            f"| {r['events']:,} | {r['live_events']:,} | {r['stops']:,} | {e['events_per_s']:,.0f} | {e['seconds']:.3f} "
            f"| {e['live_only_mean_us']:.2f} | {e['live_mean_us']:.2f} | {e['live_p50_us']:.2f} | {e['live_p99_us']:.2f} "
            f"| {est}{f(rc['mean_us'])} | {est}{f(r['speedup'], 0)}× | {est}{f(r['speedup_per_live_event'], 0)}× "
            f"| {f(m.get('tracemalloc_peak_mib'), 2)} | {f(m.get('maxrss_mib'), 0)} |")
    out += ["", "Engine µs per event by what the event does (median over the configurations of each N; "
            "`band` = the row that brings a run to a band, including its first row; `stop` = a row after "
            "which runs are stopped).", "",
            "| N | " + " | ".join(f"{k} (count) µs" for k in KINDS) + " |", "|---:|" + "---:|" * len(KINDS)]
    for n in sizes:
        rs = [r for r in rows if r["n"] == n]
        cells = []
        for k in KINDS:
            cnt = med([r["engine_by_kind"][k]["events"] for r in rs])
            mu = med([r["engine_by_kind"][k]["mean_us"] for r in rs])
            cells.append(f"({cnt:,.0f}) {f(mu, 2)}")
        out.append(f"| {n:,} | " + " | ".join(cells) + " |")
    out += ["", "Growth of the cost per live event, as a factor per 10× runs (median over repeats of the "
            "within-repeat ratio); exponent k in cost ∝ N^k over the whole range (0 = flat, 1 = linear). "
            "*engine* = µs/live event of the live-only replay; *timed mean*, *p50* = per-event timings.", ""]
    steps = [f"{a:,}→{b:,}" for a, b in zip(sizes, sizes[1:])]
    out.append("| rule | strict | goal | " + " | ".join(f"engine {s}" for s in steps) + " | engine k | "
               + " | ".join(f"timed mean {s}" for s in steps) + " | timed mean k | "
               + " | ".join(f"engine p50 {s}" for s in steps) + " | engine p50 k | "
               + " | ".join(f"recompute {s}" for s in steps) + " | recompute k |")
    out.append("|---|---|---|" + "---:|" * (4 * len(steps) + 4))
    for g in growth:
        out.append(f"| {g['rule']} | {'yes' if g['strict'] else 'no'} | {g['goal'][:3]} | "
                   + " | ".join(f"{s['live_only_us_ratio_per_10x']:.2f}×" for s in g["steps"])
                   + f" | {g['live_only_us_exponent']:.3f} | "
                   + " | ".join(f"{s['live_mean_us_ratio_per_10x']:.2f}×" for s in g["steps"])
                   + f" | {g['live_mean_us_exponent']:.3f} | "
                   + " | ".join(f"{s['live_p50_us_ratio_per_10x']:.2f}×" for s in g["steps"])
                   + f" | {g['live_p50_us_exponent']:.3f} | "
                   + " | ".join(f"{s['recompute_mean_us_ratio_per_10x']:.2f}×" for s in g["steps"])
                   + f" | {g['recompute_mean_us_exponent']:.3f} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
