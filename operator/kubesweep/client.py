"""`kubesweep.log(row)`: report one history row from a training script.

    import kubesweep
    for epoch in range(1, epochs + 1):
        ...
        kubesweep.log({"epoch": epoch, "val_loss": val_loss})

In a run whose Sweep has `metrics.source: push`, the operator sets KUBESWEEP_PUSH_URL and
KUBESWEEP_TOKEN_FILE, and each row is POSTed to `$KUBESWEEP_PUSH_URL/v1/report` with the pod's
projected ServiceAccount token. Anywhere else (`kubesweep run`, a sweep reading logs, a plain
`python train.py`) the row is printed as one JSON line on stdout, where kubesweep reads it.

Only the standard library is used, so any training image can carry this module.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any, Mapping

PUSH_URL_ENV = "KUBESWEEP_PUSH_URL"
TOKEN_FILE_ENV = "KUBESWEEP_TOKEN_FILE"
REPORT_PATH = "/v1/report"

TIMEOUT_SECONDS = 3.0  # per attempt
ATTEMPTS = 4  # 1 + 3 retries, only on connection errors, timeouts and 5xx answers
BACKOFF_SECONDS = 0.25  # before the first retry; doubles after each


class PushError(RuntimeError):
    """A row could not be delivered to the push endpoint."""


class PushAuthError(PushError):
    """The push endpoint refused the token (401) or the run (403). Retrying does not help."""


_sent = 0  # rows pushed by this process: the sequence number of the next row, minus one


def log(row: Mapping[str, Any]) -> None:
    """Report one history row: a mapping of metric names to values, e.g. {"epoch": 3, "loss": 0.4}.

    Non-finite floats are sent as "NaN", "Infinity", "-Infinity" (they are not iterations).
    Raises PushError when pushing fails for good: an answer 4xx (PushAuthError for 401/403), or no
    success after ATTEMPTS tries. Each pushed row carries this process's sequence number, so a
    retry that reaches the operator twice is counted once."""
    global _sent
    if not isinstance(row, Mapping):
        raise TypeError(f"kubesweep.log() takes a dict of metric names to values, not {type(row).__name__}")
    clean = _json_safe(dict(row), "row")
    url = os.environ.get(PUSH_URL_ENV, "").strip()
    if not url:
        sys.stdout.write(json.dumps(clean, allow_nan=False) + "\n")
        sys.stdout.flush()
        return
    _sent += 1
    body = {"rows": [clean], "seq": _sent}
    _post(url.rstrip("/") + REPORT_PATH, json.dumps(body, allow_nan=False).encode("utf-8"))


def _json_safe(value: Any, where: str) -> Any:
    """Plain JSON types; non-finite floats as strings; numpy/torch scalars through .item()."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars, 0-d arrays, one-element tensors
    if callable(item):
        try:
            plain = item()
        except (TypeError, ValueError):
            plain = value
        if plain is not value and isinstance(plain, (bool, int, float, str)):
            return _json_safe(plain, where)
    raise TypeError(f"kubesweep.log(): {where} is a {type(value).__name__}, which has no JSON form; "
                    f"log numbers, strings, booleans, lists or dicts")


def _token() -> str:
    path = os.environ.get(TOKEN_FILE_ENV, "").strip()
    if not path:
        raise PushError(f"{PUSH_URL_ENV} is set but {TOKEN_FILE_ENV} is not: the push endpoint needs the "
                        f"pod's projected ServiceAccount token (audience kubesweep); the operator sets both")
    try:
        with open(path, encoding="utf-8") as fh:  # read every time: the kubelet rotates the token
            token = fh.read().strip()
    except OSError as exc:
        raise PushError(f"cannot read the token file {path} ({TOKEN_FILE_ENV}): {exc.strerror or exc}") from None
    if not token:
        raise PushError(f"the token file {path} ({TOKEN_FILE_ENV}) is empty")
    return token


# Straight to the endpoint: it is an in-cluster Service, never behind HTTP(S)_PROXY.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post(url: str, body: bytes) -> None:
    delay = BACKOFF_SECONDS
    last = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            request = urllib.request.Request(url, data=body, method="POST", headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {_token()}",
            })
        except ValueError:
            raise PushError(f"{PUSH_URL_ENV}={os.environ.get(PUSH_URL_ENV)!r} is not a URL such as "
                            f"http://kubesweep.kubesweep-system.svc:8081") from None
        try:
            with _opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                response.read()
            return
        except urllib.error.HTTPError as exc:
            detail = _detail(exc)
            if exc.code in (401, 403):
                problem = ("the token was not accepted (it must be the pod's projected ServiceAccount token "
                           f"with audience kubesweep, read from {os.environ.get(TOKEN_FILE_ENV)})"
                           if exc.code == 401 else
                           "the operator takes no rows from this pod (not a run of a Sweep with metrics.source: push, "
                           "or the run has ended)")
                raise PushAuthError(f"kubesweep push to {url} refused with {exc.code} {exc.reason}: {problem}"
                                    f"{detail}") from None
            if exc.code < 500:
                raise PushError(f"kubesweep push to {url} refused with {exc.code} {exc.reason}{detail}") from None
            last = f"{exc.code} {exc.reason}{detail}"
        except (urllib.error.URLError, HTTPException, OSError) as exc:  # refused, reset, timed out
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            last = f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
        if attempt < ATTEMPTS:
            time.sleep(delay)
            delay *= 2
    raise PushError(f"kubesweep push to {url} failed after {ATTEMPTS} attempts; last: {last}")


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(500).decode("utf-8", "replace").strip()
    except Exception:  # the body is only a hint
        text = ""
    return f" ({text})" if text else ""
