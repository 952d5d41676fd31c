"""examples/digits: train.py run as W&B (and kubesweep) would run it, and its sweep.yaml."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kubesweep.engine import config
from kubesweep.engine.command import build_argv
from kubesweep.engine.rows import metric_value, parse_line

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits"


def argv(**params) -> list[str]:
    # W&B's default command, `${env} ${interpreter} ${program} ${args}`, run from the sweep's directory.
    return build_argv(None, params, program="train.py", env={}, args_json_file="", interpreter=sys.executable)


def start(**params) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "KUBESWEEP_PUSH_URL"}
    return subprocess.Popen(argv(**params), cwd=EXAMPLE, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def rows_of(out: str) -> list[dict]:
    return [row for row in map(parse_line, out.splitlines()) if row is not None and "val_loss" in row]


def test_three_epochs_print_three_rows():
    proc = start(lr=0.05, alpha=1e-4, batch_size=64, epochs=3)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    rows = rows_of(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert metric_value(r, "val_loss") is not None and 0 <= r["val_acc"] <= 1
    assert out.splitlines()[-1] == "done epochs=3"


def test_push_flag_without_endpoint_prints_json_rows():
    proc = start(lr=0.05, epochs=2, push=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [line.startswith("{") for line in out.splitlines()] == [True, True, False]
    assert [r["epoch"] for r in rows_of(out)] == [1, 2]


def test_a_good_learning_rate_beats_terrible_ones():
    # Measured at 10 epochs, batch 64, seed 0: lr 0.05 reaches val_acc ~0.97; lr 3.0 diverges and
    # lr 1e-4 barely moves (both ~0.1, chance level for 10 digits).
    lrs = {"good": 0.05, "huge": 3.0, "tiny": 1e-4}
    procs = {name: start(lr=lr, alpha=1e-4, batch_size=64, epochs=10) for name, lr in lrs.items()}
    acc = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        rows = rows_of(out)
        assert len(rows) == 10
        acc[name] = rows[-1]["val_acc"]
    assert acc["good"] > 0.9, acc
    assert acc["huge"] < 0.5 and acc["tiny"] < 0.5, acc


def test_sigterm_mid_epoch_stops_promptly_with_143():
    proc = start(lr=0.05, epochs=20, epoch_seconds=0.5)  # the signal lands inside epoch 2
    try:
        first = proc.stdout.readline()
        assert parse_line(first)["epoch"] == 1, first
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        elapsed = time.monotonic() - sent
        rest = proc.stdout.read()
    finally:
        proc.kill()
        proc.communicate()
    assert code == 143
    assert elapsed < 2.0, elapsed
    assert rest.strip().splitlines() == ["stopping: received SIGTERM after epoch 1"]


def test_sweep_file_is_valid_and_runs_train_py_from_its_directory():
    loaded = config.load_file(str(EXAMPLE / "sweep.yaml"))
    c = loaded.config
    assert loaded.warnings == []
    assert (c.name, c.method, c.metric.name, c.metric.goal) == ("digits", "random", "val_loss", "minimize")
    assert c.hyperband.bands_from_max_iter() == [2, 6]
    assert (c.run_cap, c.parallelism, c.stop_grace_period_seconds, c.max_failed_runs) == (18, 3, 10, 3)
    assert (EXAMPLE / c.program).is_file()
    pod = c.template["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
