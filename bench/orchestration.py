"""Orchestration benchmark: Ray Tune throughput and per-trial overhead of `litmus run` (prints ratios; not a test).

1. Equal trials of about ``--seconds`` each: the sequential time of one trial
   (plain ``Trainer`` in this process, one thread) x N, divided by the
   number of CPUs, is the ideal; the study's final stage through Ray Tune
   (embedded local Ray, actor reuse) is measured against it.
2. Tiny trials, two study sizes: the per-trial overhead is the slope of the
   wall time over the number of trials (so the one-time start of the trial
   workers, printed separately, cancels out).

3. ``--scale N`` (5,000 by default with ``--scale``; 20,000 with ``--large``): one study of N tiny trials;
   prints the per-trial overhead, the completion rate of the first and last tenth of the trials (late-run
   slowdown), the driver's memory during the run (peak) and after it, the time to rerun the finished
   study (resume: every trial skipped) and of ``litmus status``.

    python bench/orchestration.py [--trials 6] [--seconds 20] [--tiny 8 32]
    python bench/orchestration.py --scale 5000 [--large]
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


def rss_mb() -> float:
    """The driver process's resident memory (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sequential_seconds(n_train: int, epochs: int, seed: int = 0) -> float:
    torch.set_num_threads(1)
    cfg = TrainConfig(dataset="multi_digits", method="ew", seed=seed, epochs=epochs, device="cpu", num_threads=1,
                      dataset_options={"n_train": n_train, "n_val": 200, "n_test": 200, "width": 16})
    t0 = time.perf_counter()
    for _ in Trainer(cfg).epochs():
        pass
    return time.perf_counter() - t0


def measure(name: str, n_train: int, epochs: int, trials: int, slots: int) -> tuple[float, float]:
    """(sequential seconds of one trial, wall seconds of the study); the sequential time is the
    mean of one run before and one after the study, so machine drift hits both sides alike."""
    before = sequential_seconds(n_train, epochs)
    with tempfile.TemporaryDirectory() as tmp:
        s = spec(name, os.path.join(tmp, "store"), n_train, epochs, trials)
        driver.connect(s, None, slots)  # Ray start is not part of the measured study time
        t0 = time.perf_counter()
        res = run_study(s, num_cpus=slots, say=lambda m: None, keep_ray=True)
        wall = time.perf_counter() - t0
        assert res.counts["completed"] == trials, res.counts
    return (before + sequential_seconds(n_train, epochs)) / 2, wall


def size_for(seconds: float, epochs: int) -> int:
    """Training-set size whose trial takes about ``seconds`` sequentially (two proportional refinements)."""
    sequential_seconds(500, 1)  # warm-up (imports, data)
    n = 4000
    for _ in range(2):
        n = max(500, int(n * seconds / sequential_seconds(n, epochs)))
    return n


def scale(n: int, cpus: int) -> None:
    """One study of ``n`` tiny trials: overhead, late-run slowdown, driver memory, resume and status times."""
    import threading

    import pandas as pd

    from study.run_cli import status_table

    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.5)

    with tempfile.TemporaryDirectory(prefix="litmus-orch-") as tmp:
        s = spec("bench-scale", os.path.join(tmp, "store"), 200, 1, n)
        driver.connect(s, None, cpus)
        one = sequential_seconds(200, 1)
        threading.Thread(target=sample, daemon=True).start()
        t0 = time.perf_counter()
        res = run_study(s, num_cpus=cpus, say=lambda m: None, keep_ray=True)
        wall = time.perf_counter() - t0
        stop.set()
        after = rss_mb()
        assert res.counts["completed"] == n, res.counts
        import analysis

        done = pd.to_datetime(analysis.load_trials(s.store)["finished_at"]).sort_values().to_numpy()
        tenth = max(1, n // 10)
        first = (done[tenth - 1] - done[0]) / pd.Timedelta(seconds=1)
        last = (done[-1] - done[-tenth]) / pd.Timedelta(seconds=1)
        t1 = time.perf_counter()
        run_study(s, num_cpus=cpus, say=lambda m: None, keep_ray=True)
        resume = time.perf_counter() - t1
        t2 = time.perf_counter()
        status_table(s.store)
        status = time.perf_counter() - t2
    overhead = wall / n * cpus - one
    print(f"scale: {n} tiny trials ({one:.2f}s each) on {cpus} CPUs in {wall:.0f}s -> overhead {overhead * 1000:.0f} ms "
          f"per trial per slot; first tenth {first:.0f}s, last tenth {last:.0f}s "
          f"({(last / first - 1) if first > 0 else float('nan'):+.0%} late-run slowdown); "
          f"driver RSS peak during the run {peak[0]:.0f} MB, after {after:.0f} MB; "
          f"rerun of the finished study {resume:.1f}s; litmus status {status:.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--tiny", type=int, nargs=2, default=[8, 32], metavar=("N1", "N2"))
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--scale", type=int, nargs="?", const=5000, default=None,
                    help="only the study of N tiny trials (default 5000)")
    ap.add_argument("--large", action="store_true", help="with --scale: 20,000 trials")
    a = ap.parse_args()
    if a.scale is not None:
        scale(20000 if a.large else a.scale, a.cpus)
        return
    epochs = 10  # a realistic report/checkpoint rate: one report and checkpoint per epoch
    n_train = size_for(a.seconds, epochs)
    one, wall = measure("bench-equal", n_train, epochs, a.trials, a.cpus)
    ideal = one * a.trials / a.cpus
    print(f"equal trials: {a.trials} x {one:.1f}s ({epochs} epochs of {n_train} images) on {a.cpus} CPUs: "
          f"ideal {ideal:.1f}s, Ray Tune {wall:.1f}s (Ray already started; includes starting the trial workers) "
          f"-> throughput {ideal / wall:.0%} of ideal")
    # per-trial overhead: the slope of wall time over the number of tiny trials (fixed start-up cancels)
    n1, n2 = a.tiny
    one_t, w1 = measure("bench-tiny-a", 200, 1, n1, a.cpus)
    rss1 = rss_mb()
    _, w2 = measure("bench-tiny-b", 200, 1, n2, a.cpus)
    rss2 = rss_mb()
    _, _ = measure("bench-tiny-c", 200, 1, 4 * n2, a.cpus)
    rss3 = rss_mb()
    per_slot = (n2 - n1) / a.cpus
    overhead = ((w2 - w1) - one_t * per_slot) / per_slot
    startup = w1 - (one_t + overhead) * n1 / a.cpus
    print(f"tiny trials ({one_t:.2f}s each): {n1} in {w1:.1f}s, {n2} in {w2:.1f}s -> overhead {overhead:.2f}s per trial "
          f"per slot (actor reuse); one-time start of the trial workers {startup:.1f}s per study")
    print(f"driver memory (RSS) after studies of {n1}, {n2} and {4 * n2} tiny trials: "
          f"{rss1:.0f}, {rss2:.0f}, {rss3:.0f} MB")


if __name__ == "__main__":
    main()
