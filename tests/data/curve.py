"""A stand-in training script with a deterministic learning curve: loss = quality / epoch.

--quality picks how good the run is (lower is better); --epochs how long it trains;
--ignore_sigterm imitates a script that does not stop on SIGTERM; --fail_at exits 3 at that epoch.
"""
import argparse
import signal
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--quality", type=float, required=True)
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--epoch_seconds", type=float, default=0.05)
p.add_argument("--ignore_sigterm", default="False")
p.add_argument("--fail_at", type=int, default=0)
a, _ = p.parse_known_args()
if a.ignore_sigterm == "True":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
for epoch in range(1, a.epochs + 1):
    time.sleep(a.epoch_seconds)
    if epoch == a.fail_at:
        print("boom", flush=True)
        sys.exit(3)
    print(f"epoch={epoch} loss={a.quality / epoch:.6f}", flush=True)
print("done", flush=True)
