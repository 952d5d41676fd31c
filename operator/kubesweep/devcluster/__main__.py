"""python -m kubesweep.devcluster {up,build}"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .controlplane import ControlPlane, ControlPlaneError, build_binaries, build_script


def _cmd_build(args: argparse.Namespace) -> int:
    cmd = ["bash", str(build_script())] + (["--force"] if args.force else [])
    return subprocess.call(cmd)


def _cmd_up(args: argparse.Namespace) -> int:
    if args.bin_dir:
        bin_dir = Path(args.bin_dir)
    else:
        # Reuses existing binaries in well under a second; builds otherwise.
        bin_dir = build_binaries(stream=sys.stderr)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="kubesweep-dev-"))
    cp = ControlPlane(workdir, bin_dir, start_timeout=args.timeout)

    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    print(f"starting control plane in {workdir} (binaries: {bin_dir}) ...", file=sys.stderr, flush=True)
    try:
        cp.start()
    except ControlPlaneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sim = None
    try:
        print(f"control plane up in {cp.startup_seconds:.1f}s: {cp.server}", file=sys.stderr)
        if args.sim_nodes > 0:
            from .simkubelet import SimKubelet, gpu_nodes  # lazy: needs aiohttp

            sim = SimKubelet.for_control_plane(cp, gpu_nodes(args.sim_nodes, args.sim_gpus),
                                               epoch_seconds=args.sim_epoch_seconds).start()
            print(f"simulated GPU nodes: {', '.join(sim.node_names)}", file=sys.stderr)
        print(f"logs: {cp.log_dir}", file=sys.stderr)
        print(f"kubelet serving cert/key: {cp.kubelet_serving_cert_file} {cp.kubelet_serving_key_file}", file=sys.stderr)
        print(f"export KUBECONFIG={shlex.quote(str(cp.kubeconfig))}", flush=True)
        print("press Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(1.0):
            if not cp.running:
                print("error: a control-plane process exited; see the logs", file=sys.stderr)
                return 1
        return 0
    finally:
        print("stopping ...", file=sys.stderr, flush=True)
        if sim is not None:
            sim.stop()  # before cp.stop(): it deletes its nodes through the API server
        cp.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubesweep.devcluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the control plane and wait for Ctrl-C")
    up.add_argument("--workdir", help="state directory (default: a new temporary directory)")
    up.add_argument(
        "--bin-dir",
        default=os.environ.get("KUBESWEEP_BIN_DIR"),
        help="directory with etcd and kube-* binaries (default: $KUBESWEEP_BIN_DIR, else build/reuse the cache)",
    )
    up.add_argument("--timeout", type=float, default=120.0, help="start-up timeout in seconds")
    up.add_argument("--sim-nodes", type=int, default=2, help="simulated GPU nodes (0: none)")
    up.add_argument("--sim-gpus", type=int, default=8, help="nvidia.com/gpu per simulated node")
    up.add_argument("--sim-epoch-seconds", type=float, default=1.0, help="seconds per simulated training epoch")
    up.set_defaults(func=_cmd_up)

    build = sub.add_parser("build", help="run hack/build-controlplane.sh (reuses cached binaries)")
    build.add_argument("--force", action="store_true", help="rebuild even if the binaries are current")
    build.set_defaults(func=_cmd_build)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
