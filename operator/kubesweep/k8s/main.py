"""`kubesweep operator`: run the operator against the current kubeconfig (or in-cluster config)."""
from __future__ import annotations

import argparse
import logging
import os

import kopf

from . import handlers
from .api import Kube, load_client_config


def run_operator(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_client_config()
    handlers.setup(Kube(), push_url=args.push_url or os.environ.get("KUBESWEEP_PUSH_URL"),
                   metrics_port=args.metrics_port, push_port=args.push_port, record_dir=args.record_dir)
    clusterwide = args.all_namespaces or not args.namespace
    kopf.run(standalone=True, clusterwide=clusterwide, namespaces=() if clusterwide else args.namespace,
             liveness_endpoint=args.liveness)
    return 0
