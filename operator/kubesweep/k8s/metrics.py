"""Prometheus metrics of the operator. Definitions are in docs/metrics.md.

Totals (runs by state, iterations, GPU-seconds, early stops) are computed at scrape time from
the runs' records, so they survive operator restarts; per-event series (decision latency, rows
received, push rejections) are ordinary process metrics. Labels: namespace and sweep only.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

DECISION_LATENCY = Histogram(
    "kubesweep_decision_latency_seconds",
    "Time from receiving the metric row that triggered a stop to the Job suspend request being answered.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ROWS = Counter("kubesweep_metric_rows", "History rows received from runs.", ["namespace", "sweep", "source"])
PUSH_REJECTED = Counter("kubesweep_push_rejected", "Push requests refused, by reason.", ["reason"])


class SweepCollector(Collector):
    def __init__(self, controllers: Callable[[], Iterable[Any]]):
        self.controllers = controllers

    def collect(self) -> Iterable[Any]:
        labels = ["namespace", "sweep"]
        runs = GaugeMetricFamily("kubesweep_runs", "Runs by state.", labels=labels + ["state"])
        trained = CounterMetricFamily("kubesweep_iterations_trained", "Iterations (finite metric values) trained.", labels=labels)
        saved = CounterMetricFamily("kubesweep_iterations_saved", "Planned iterations not trained because a run was stopped early.", labels=labels)
        used = CounterMetricFamily("kubesweep_gpu_seconds_used", "GPUs requested x seconds each run has run.", labels=labels)
        gsaved = CounterMetricFamily("kubesweep_gpu_seconds_saved", "Iterations saved x the run's seconds per iteration x its GPUs.", labels=labels)
        stops = CounterMetricFamily("kubesweep_early_stops", "Runs stopped early, by band (in iterations).", labels=labels + ["band"])
        best = GaugeMetricFamily("kubesweep_best_value", "Latest value of the best run (runs ranked by their last value, as W&B does).", labels=labels)
        for c in list(self.controllers()):
            if c.tracker is None:
                continue
            usage, states, bands = c.totals()
            key = [c.ns, c.name]
            for state, n in states.items():
                runs.add_metric(key + [state], n)
            trained.add_metric(key, usage.iterations_trained)
            saved.add_metric(key, usage.iterations_saved)
            used.add_metric(key, usage.gpu_seconds_used)
            gsaved.add_metric(key, usage.gpu_seconds_saved)
            for band, n in sorted(bands.items()):
                stops.add_metric(key + [str(band)], n)
            b = c.tracker.best_run()
            if b is not None and b.latest is not None:
                best.add_metric(key, b.latest)
        yield from (runs, trained, saved, used, gsaved, stops, best)


def register(controllers: Callable[[], Iterable[Any]]) -> SweepCollector:
    collector = SweepCollector(controllers)
    REGISTRY.register(collector)
    return collector
