"""kubesweep: Kubernetes-native hyperparameter sweeps with W&B-compatible Hyperband early termination."""

from .client import log

__all__ = ["log"]
