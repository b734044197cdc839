"""Orchestration benchmark: Ray Tune throughput and per-trial overhead of `litmus run` (prints ratios; not a test).

1. Equal trials of about ``--seconds`` each: the sequential time of one trial
   (plain ``Trainer`` in this process, one thread) x N, divided by the
   number of CPUs, is the ideal; the study's final stage through Ray Tune
   (embedded local Ray, actor reuse) is measured against it.
2. Many tiny trials: per-trial overhead = (wall - ideal) / trials per slot.

    python bench/orchestration.py [--trials 6] [--seconds 20] [--tiny 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import torch

from study import driver
from study.run import run_study
from study.spec import parse
from trainables.config import TrainConfig
from trainables.trainer import Trainer


def spec(name: str, store: str, n_train: int, epochs: int, seeds: int) -> Any:
    return parse({
        "name": name, "store": store,
        "datasets": [{"name": "multi_digits", "epochs": epochs,
                      "options": {"n_train": n_train, "n_val": 200, "n_test": 200, "width": 16}}],
        "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": seeds},
        "checkpoint_every": 1,
    })


def sequential_seconds(n_train: int, epochs: int, seed: int = 0) -> float:
    torch.set_num_threads(1)
    cfg = TrainConfig(dataset="multi_digits", method="ew", seed=seed, epochs=epochs, device="cpu", num_threads=1,
                      dataset_options={"n_train": n_train, "n_val": 200, "n_test": 200, "width": 16})
    t0 = time.perf_counter()
    for _ in Trainer(cfg).epochs():
        pass
    return time.perf_counter() - t0


def measure(name: str, n_train: int, epochs: int, trials: int, slots: int) -> tuple[float, float]:
    one = sequential_seconds(n_train, epochs)
    with tempfile.TemporaryDirectory() as tmp:
        s = spec(name, os.path.join(tmp, "store"), n_train, epochs, trials)
        driver.connect(s, None, slots)  # Ray start is not part of the measured study time
        t0 = time.perf_counter()
        res = run_study(s, num_cpus=slots, say=lambda m: None, keep_ray=True)
        wall = time.perf_counter() - t0
        assert res.counts["completed"] == trials, res.counts
    return one, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--tiny", type=int, default=20)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    # size the equal trials: seconds per epoch of a 2000-image epoch, then epochs to reach --seconds
    # about 10 epochs per trial (a realistic report/checkpoint rate): size the training set to match
    sequential_seconds(2000, 1)  # warm-up (imports, data)
    per_epoch = (sequential_seconds(2000, 3) - sequential_seconds(2000, 1)) / 2
    n_train = max(500, int(2000 * a.seconds / 10 / per_epoch))
    epochs = 10
    one, wall = measure("bench-equal", n_train, epochs, a.trials, a.cpus)
    ideal = one * a.trials / a.cpus
    print(f"equal trials: {a.trials} x {one:.1f}s ({epochs} epochs of {n_train} images) on {a.cpus} CPUs: ideal {ideal:.1f}s, "
          f"Ray Tune {wall:.1f}s (Ray already started) -> throughput {ideal / wall:.0%} of ideal")
    one_t, wall_t = measure("bench-tiny", 200, 1, a.tiny, a.cpus)
    ideal_t = one_t * a.tiny / a.cpus
    per_slot = a.tiny / a.cpus
    print(f"tiny trials: {a.tiny} x {one_t:.2f}s: wall {wall_t:.1f}s, ideal {ideal_t:.1f}s -> "
          f"overhead {(wall_t - ideal_t) / per_slot:.2f}s per trial")


if __name__ == "__main__":
    main()
