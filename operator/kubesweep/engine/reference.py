"""The Hyperband stopping rule exactly as published: a stateless recompute over every history.

Slow on purpose (every evaluation re-scans all runs). It is the yardstick the incremental
`Hyperband` is tested and benchmarked against, never used to make live decisions.
"""
from __future__ import annotations

from .bands import HyperbandRule


def runs_to_stop(
    rule: HyperbandRule,
    maximize: bool,
    histories: dict[str, list[float]],
    running: set[str],
) -> dict[str, tuple[int, float, float]]:
    """Running runs to stop now: run -> (band, judged value, threshold). `histories` hold only
    finite values of the sweep metric, of every run in any state."""
    sign = -1.0 if maximize else 1.0
    longest = max((len(h) for h in histories.values()), default=0)
    bands = rule.bands_up_to(longest)
    thresholds = []
    for b in bands:
        vals = sorted(sign * h[b - 1] for h in histories.values() if len(h) >= b)
        thresholds.append(vals[int(len(vals) / rule.eta)])
    out = {}
    for run in running:
        h = histories.get(run, [])
        reached = [j for j, b in enumerate(bands) if len(h) >= b]
        if not reached:
            continue
        j = reached[-1]
        value = sign * h[bands[j] - 1] if rule.strict else min(sign * v for v in h)
        if value > thresholds[j]:
            out[run] = (bands[j], sign * value, sign * thresholds[j])
    return out
