"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler built from source) on loopback, for kubesweep's tests and local use.

    python -m kubesweep.devcluster build   # hack/build-controlplane.sh (cached)
    python -m kubesweep.devcluster up      # start it; prints export KUBECONFIG=...

This package needs only the standard library and ``cryptography``; it must not
import kopf or the kubesweep engine.
"""

from .controlplane import (
    DEFAULT_KUBE_VERSION,
    ControlPlane,
    ControlPlaneError,
    build_binaries,
    build_script,
    default_bin_dir,
    kube_version,
    repo_root,
)

__all__ = [
    "DEFAULT_KUBE_VERSION",
    "ControlPlane",
    "ControlPlaneError",
    "build_binaries",
    "build_script",
    "default_bin_dir",
    "kube_version",
    "repo_root",
]
