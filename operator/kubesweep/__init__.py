"""kubesweep: Kubernetes-native hyperparameter sweeps with W&B-compatible Hyperband early termination."""
