"""History rows: reading them from a training script's output, and the sweep metric's value in one."""
from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

_PAIR = re.compile(r"(?:^|[\s,;|])([A-Za-z_][\w./-]*)=(\"[^\"]*\"|'[^']*'|[^\s,;|]+)")


def _scalar(text: str) -> Any:
    if text[:1] in "\"'":
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)  # also nan, inf, -inf
    except ValueError:
        return text


def parse_line(line: str) -> dict[str, Any] | None:
    """One history row from one line of output, or None when the line holds none.

    A line that is a JSON object is a row as it is. Otherwise every `key=value` pair on the line
    makes one row (`epoch=3 val_loss=0.41 acc=0.9`); a line without pairs is not a row."""
    text = line.strip()
    if text.startswith("{") and text.endswith("}"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return obj
    pairs = _PAIR.findall(text)
    if not pairs:
        return None
    return {k: _scalar(v) for k, v in pairs}


def metric_value(row: Mapping[str, Any], name: str) -> float | None:
    """The finite value of `name` in a row; None when it is missing or not finite (such a row is
    not an iteration: W&B counts only finite values of the sweep metric)."""
    if name not in row:
        return None
    v = row[name]
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
