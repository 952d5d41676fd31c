"""The `kubesweep` command: validate, plan, replay, run (locally) and operator (in a cluster)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .engine import config as cfg
from .engine.plan import plan, render
from .engine.problems import ConfigError
from .engine.replay import parse_events, replay

EXIT_INVALID = 2


def _count(minimum: int):
    """An argparse type: a whole number >= minimum, with a message naming the bound."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _load(path: str) -> cfg.Loaded:
    return cfg.load_file(path)


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = _load(args.sweep)
    for w in loaded.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{args.sweep}: valid ({loaded.config.method}, {len(loaded.config.parameters)} parameters)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    p = plan(_load(args.sweep), args.runs, args.commands, args.seed, args.iterations, dict(os.environ))
    print(json.dumps(p, indent=2) if args.json else render(p))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    loaded = _load(args.sweep)
    with open(args.events, encoding="utf-8") as fh:
        events = parse_events(fh, source=args.events)
    result = replay(loaded.config, events)
    result["warnings"] = loaded.warnings + result["warnings"]
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"bands: {result['bands']}")
    for name, r in result["runs"].items():
        line = f"{name}: {r['state']}, {r['iterations']} iterations"
        if r["stopped"]:
            line += f" — {r['stopped']['reason']} (after event {r['stopped']['after_event']})"
        print(line)
    if result["best"]:
        print(f"best: {result['best']['run']} ({result['metric']} = {result['best']['value']:.6g})")
    for w in result["warnings"]:
        print(f"warning: {w}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .local.runner import run_sweep  # processes and terminal output only when asked for

    return run_sweep(_load(args.sweep), args)


def cmd_operator(args: argparse.Namespace) -> int:
    from .k8s.main import run_operator  # kopf and the kubernetes client only when asked for

    return run_operator(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubesweep", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a sweep; exit 0, or 2 with the problems")
    p.add_argument("sweep", help="a Sweep manifest or a bare W&B sweep config (YAML)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="bands, warnings, iteration budget and the first runs' commands")
    p.add_argument("sweep")
    p.add_argument("--runs", type=_count(1), help="runs to budget for (default: run_cap, grid size, or 100)")
    p.add_argument("--commands", type=_count(0), default=0, metavar="K",
                   help="show the first K runs' parameters and argv (as the cluster runs them)")
    p.add_argument("--iterations", type=_count(1), help="iterations one run trains if not stopped (default: from the sweep)")
    p.add_argument("--seed", default="kubesweep", help="sampling seed (the local runner's default; a cluster uses the Sweep's uid)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("replay", help="replay recorded events (JSON Lines) and print the decisions")
    p.add_argument("sweep")
    p.add_argument("events")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("run", help="run the sweep on this machine, one local process per run")
    p.add_argument("sweep")
    p.add_argument("--parallelism", type=_count(1), help="concurrent runs (default: the sweep's parallelism)")
    p.add_argument("--run-cap", type=_count(1), help="stop after this many runs (default: the sweep's run_cap)")
    p.add_argument("--workdir", default="kubesweep-runs", help="where run logs, args files and the replay file go")
    p.add_argument("--seed", default="kubesweep")
    p.add_argument("--stop-grace", type=_seconds, help="seconds between SIGTERM and SIGKILL (default: the sweep's)")
    p.add_argument("--quiet", action="store_true", help="no live progress, only the summary")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("operator", help="run the operator against the current kubeconfig")
    p.add_argument("--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    p.add_argument("--all-namespaces", action="store_true")
    p.add_argument("--metrics-port", type=int, default=8080)
    p.add_argument("--push-port", type=int, default=8081)
    p.add_argument("--liveness", default=None, help="kopf liveness endpoint, e.g. http://0.0.0.0:8090/healthz")
    p.add_argument("--record-dir", default=None, help="append every row and run end each sweep's engine sees to "
                   "DIR/<namespace>_<sweep>.jsonl (the replay format)")
    p.add_argument("--push-url", default=None, help="URL runs push to (metrics.source push); default $KUBESWEEP_PUSH_URL")
    p.set_defaults(func=cmd_operator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        where = getattr(args, "sweep", "")
        events = getattr(args, "events", None)
        if events and all(p.field.startswith(events) for p in exc.problems):
            print(f"{events}: invalid events file", file=sys.stderr)
        else:
            print(f"{where}: invalid sweep" if where else "invalid input", file=sys.stderr)
        for problem in exc.problems:
            print(f"  error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: no such file", file=sys.stderr)
        return EXIT_INVALID
    except IsADirectoryError as exc:
        print(f"error: {exc.filename}: is a directory, not a file", file=sys.stderr)
        return EXIT_INVALID
    except NotADirectoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except UnicodeDecodeError as exc:
        print(f"error: the file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        sys.stderr.close()  # e.g. `kubesweep replay ... | head`: the reader has all it wanted
        return 0


if __name__ == "__main__":
    sys.exit(main())
