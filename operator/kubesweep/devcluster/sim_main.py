"""Run the simulated kubelet in the foreground until Ctrl-C / SIGTERM.

    python -m kubesweep.devcluster.sim_main --kubeconfig KUBECONFIG \\
        --cert kubelet-serving.crt --key kubelet-serving.key --client-ca ca.crt \\
        --nodes 2 --gpus 8 --epoch-seconds 1

or, for a control plane started with ``python -m kubesweep.devcluster up
--workdir DIR``, just ``--workdir DIR`` (DIR/kubeconfig, DIR/pki/...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from .simkubelet import GPU_TAINT, SimKubelet, SimKubeletError, gpu_nodes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kubesweep.devcluster.sim_main",
        description="Simulated GPU nodes whose pods play training runs (see kubesweep.devcluster.simkubelet).",
    )
    p.add_argument("--workdir", help="a ControlPlane workdir: defaults for the four files below")
    p.add_argument("--kubeconfig", help="admin kubeconfig (default: $KUBECONFIG or WORKDIR/kubeconfig)")
    p.add_argument("--cert", help="kubelet serving cert (default: WORKDIR/pki/kubelet-serving.crt)")
    p.add_argument("--key", help="kubelet serving key (default: WORKDIR/pki/kubelet-serving.key)")
    p.add_argument(
        "--client-ca",
        help="CA that must have signed callers' client certs (default: WORKDIR/pki/ca.crt; "
        "without it and without --workdir, client certs are not checked)",
    )
    p.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    p.add_argument("--gpus", type=int, default=8, help="nvidia.com/gpu per node (default 8)")
    p.add_argument("--node-prefix", default="gpu-", help="node names are PREFIX0, PREFIX1, ... (default gpu-)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="extra node label (repeatable)")
    p.add_argument("--no-taint", action="store_true", help=f"do not taint the nodes {GPU_TAINT['key']}=present:NoSchedule")
    p.add_argument("--epoch-seconds", type=float, default=1.0, help="seconds per simulated epoch (default 1)")
    p.add_argument("--port", type=int, default=0, help="kubelet API port on 127.0.0.1 (default: any free port)")
    p.add_argument("--keep-pods", action="store_true", help="leave the pods on the nodes when stopping")
    p.add_argument("--stats-interval", type=float, default=0.0, help="print stats as JSON every N seconds")
    p.add_argument("--log-level", default="INFO")
    return p


def _resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    wd = Path(args.workdir) if args.workdir else None
    if wd is not None:
        args.kubeconfig = args.kubeconfig or str(wd / "kubeconfig")
        args.cert = args.cert or str(wd / "pki" / "kubelet-serving.crt")
        args.key = args.key or str(wd / "pki" / "kubelet-serving.key")
        args.client_ca = args.client_ca or str(wd / "pki" / "ca.crt")
    args.kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG")
    missing = [f"--{n}" for n in ("kubeconfig", "cert", "key") if not getattr(args, n)]
    if missing:
        parser.error(f"{', '.join(missing)} required (or --workdir)")


async def _amain(args: argparse.Namespace) -> int:
    labels = dict(kv.split("=", 1) for kv in args.label)
    nodes = gpu_nodes(
        args.nodes, args.gpus, prefix=args.node_prefix, labels=labels,
        **({"taints": []} if args.no_taint else {}),
    )
    sim = SimKubelet(
        args.kubeconfig, args.cert, args.key, nodes, args.epoch_seconds,
        client_ca=args.client_ca, port=args.port, cleanup_pods=not args.keep_pods,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.astart()
    except (SimKubeletError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        await sim.astop()
        return 1
    print(
        f"simkubelet: {len(nodes)} node(s) x {args.gpus} GPU(s) ready "
        f"({', '.join(sim.node_names[:3])}{', ...' if len(nodes) > 3 else ''}); "
        f"kubelet API on https://127.0.0.1:{sim.port}; Ctrl-C to stop",
        file=sys.stderr, flush=True,
    )
    try:
        if args.stats_interval > 0:
            cpu0, t0 = time.process_time(), time.monotonic()
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), args.stats_interval)
                except asyncio.TimeoutError:
                    pass
                cpu1, t1 = time.process_time(), time.monotonic()
                snap = sim.stats()
                snap["cpu_percent"] = round(100 * (cpu1 - cpu0) / max(t1 - t0, 1e-9), 1)
                cpu0, t0 = cpu1, t1
                print(json.dumps(snap), file=sys.stderr, flush=True)
        else:
            await stop.wait()
    finally:
        print("simkubelet: stopping ...", file=sys.stderr, flush=True)
        await sim.astop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _resolve(args, parser)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_amain(args))


if __name__ == "__main__":
    sys.exit(main())
