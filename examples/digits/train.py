"""Train a small neural network on scikit-learn's bundled digits, one history row per epoch.

    python train.py --lr=0.03 --alpha=0.0001 --batch_size=64 --epochs=20

Prints after every epoch `epoch=N val_loss=... val_acc=...` (val_loss is the log loss on a fixed
validation split, so every run of a sweep is judged on the same 450 images), and `done epochs=N`
at the end. Parameters come as `--name=value` flags, the way the W&B agent (and kubesweep) pass
them. On SIGTERM (kubesweep stopping the run early) it prints `stopping: ...` and exits 143.
No downloads: the 1,797 8x8 images ship inside scikit-learn.
"""
from __future__ import annotations

import os

# A tiny model: one BLAS thread per run is faster, and lets several runs share a few cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import contextlib
import math
import signal
import sys
import time
import warnings

EXIT_SIGTERM = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM
SPLIT_SEED = 0  # the train/validation split never changes; --seed changes init and shuffling


class Stopped(BaseException):
    """Raised in the main thread by the SIGTERM handler, wherever it is (even mid-epoch). A
    BaseException, like KeyboardInterrupt, so no library's `except Exception` can swallow it."""


class _Sigterm:
    """Raise Stopped on SIGTERM, except while a row is being printed: then right after it.

    kubesweep sends SIGTERM the moment it reads the row that gets a run stopped, so the signal
    usually lands inside that very print(); holding it there keeps "after epoch N" exact."""

    def __init__(self) -> None:
        self.holding = False
        self.pending = False

    def __call__(self, signum, frame) -> None:
        self.pending = True
        if not self.holding:
            raise Stopped()

    @contextlib.contextmanager
    def held(self):
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            raise Stopped()


_sigterm = _Sigterm()


def _count(text: str) -> int:
    # W&B formats values with str(); accept "64" and also "64.0".
    value = float(text)
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _flag(text: str) -> bool:
    # `--push`, or W&B's `--push=True` / `--push=False` when it is a sweep parameter.
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--lr", type=_positive, default=0.03, help="SGD learning rate (default 0.03)")
    p.add_argument("--alpha", type=_non_negative, default=1e-4, help="L2 penalty (default 1e-4)")
    p.add_argument("--batch_size", type=_count, default=64, help="mini-batch size (default 64)")
    p.add_argument("--epochs", type=_count, default=20, help="passes over the training set (default 20)")
    p.add_argument("--seed", type=int, default=0, help="weight init and shuffling (default 0)")
    p.add_argument("--epoch_seconds", type=_non_negative, default=0.0,
                   help="make each epoch take at least this long, to imitate a slow GPU epoch (default 0)")
    p.add_argument("--push", type=_flag, nargs="?", const=True, default=False,
                   help="report rows with kubesweep.log() instead of printing them (metrics.source: push)")
    return p.parse_args(argv)


def _reporter(push: bool):
    if not push:
        return lambda row: print(" ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
    try:
        import kubesweep
    except ImportError:  # running from a checkout without `pip install`: use the source tree
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "operator"))
        import kubesweep
    return kubesweep.log


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def train(args: argparse.Namespace, report, progress: list[int]) -> None:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # pixel values are 0..16
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=SPLIT_SEED, stratify=y)
    classes = np.unique(y)
    model = MLPClassifier(
        hidden_layer_sizes=(64,), solver="sgd", learning_rate="constant", learning_rate_init=args.lr,
        momentum=0.9, alpha=args.alpha, batch_size=args.batch_size, shuffle=True, random_state=args.seed,
    )
    for epoch in range(1, args.epochs + 1):
        started = time.monotonic()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # overflow and friends, for the learning rates meant to fail
            # One partial_fit call is one pass over the training set in shuffled mini-batches of
            # batch_size: one SGD step per mini-batch, optimizer state (momentum) kept between calls.
            model.partial_fit(x_train, y_train, classes=classes)
            proba = model.predict_proba(x_val)
        if np.all(np.isfinite(proba)):
            val_loss = float(log_loss(y_val, proba, labels=classes))
            val_acc = float(accuracy_score(y_val, classes[proba.argmax(axis=1)]))
        else:  # diverged: no loss to report (kubesweep, like W&B, does not count a NaN as an iteration)
            val_loss = val_acc = math.nan
        pause = args.epoch_seconds - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)  # SIGTERM interrupts this: the handler raises Stopped
        # A pushed row is acknowledged over HTTP, which may take a while: SIGTERM interrupts it.
        with contextlib.nullcontext() if args.push else _sigterm.held():
            report({"epoch": epoch, "val_loss": val_loss, "val_acc": val_acc})
            progress[0] = epoch


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _sigterm)  # first, so a stop during the imports is handled too
    args = parse_args(argv)
    progress = [0]  # epochs reported so far (printed, or acknowledged by the push endpoint)
    try:
        train(args, _reporter(args.push), progress)
        print(f"done epochs={progress[0]}", flush=True)
    except Stopped:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print(f"stopping: received SIGTERM after epoch {progress[0]}", flush=True)
        return EXIT_SIGTERM
    return 0


if __name__ == "__main__":
    code = main()
    if code == EXIT_SIGTERM:
        # Skip the interpreter's teardown of numpy and scikit-learn (about 0.3 s): nothing is left
        # to save, and a stopped run should free its slot at once.
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
