"""Step cost of every method relative to EW on each bundled benchmark.

    python bench/step_cost.py [--datasets multi_digits scenes] [--steps 40] [--repeats 5] [--methods ew rlw ...]

For each benchmark, every method (gradient methods in each space they support)
trains on the same pre-built batches in this process; steps are timed after a
warm-up, methods interleaved step by step (every method takes step i before any
takes step i+1) so that drift of the machine's speed hits them alike. Printed: median step time, the ratio to EW's, and for
gradient methods the share of the step spent in the method's ``direction``
(its solver). Also the wall time of one full EW epoch of ``multi_digits``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from trainables import weighting
from trainables.batching import batches
from trainables.config import TrainConfig
from trainables.trainer import Trainer

BENCH_OPTIONS = {
    "multi_digits": {"n_train": 2048, "n_val": 8, "n_test": 8},
    "digit_attributes": {"n_train": 2048, "n_val": 8, "n_test": 8},
    "scenes": {"n_train": 256, "n_val": 4, "n_test": 4},
}


def variants(methods: list[str] | None) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for name in methods or weighting.names():
        cls = weighting.get(name)
        if cls.kind == "grad":
            out += [(name, s) for s in cls.spaces]
        else:
            out.append((name, None))
    return out


class Timed:
    """Wraps a gradient method's ``direction`` to accumulate the time spent in it."""

    def __init__(self, method: Any) -> None:
        self.inner = method.direction
        self.seconds = 0.0
        method.direction = self

    def __call__(self, *args: Any) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.inner(*args)
        self.seconds += time.perf_counter() - t0
        return out


def measure(dataset: str, methods: list[str] | None, steps: int, repeats: int, warmup: int = 5) -> list[dict[str, Any]]:
    rows = []
    trainers: dict[tuple[str, str | None], Trainer] = {}
    timers: dict[tuple[str, str | None], Timed] = {}
    splits = None
    for name, space in variants(methods):
        cfg = TrainConfig(dataset=dataset, method=name, space=space, dataset_options=BENCH_OPTIONS[dataset], seed=0,
                          distribution="normal" if weighting.takes_distribution(name) else None)
        tr = Trainer(cfg, splits=splits)
        splits = tr.splits
        trainers[(name, space)] = tr
        if tr.grad_method is not None:
            timers[(name, space)] = Timed(tr.grad_method)
    batches = list(batches(splits.train, trainers[("ew", None)].cfg.batch_size, torch.Generator().manual_seed(0),
                            torch.device("cpu")))
    times: dict[tuple[str, str | None], list[float]] = {k: [] for k in trainers}
    solver: dict[tuple[str, str | None], float] = {k: 0.0 for k in trainers}
    for key, tr in trainers.items():
        tr.model.train()
        for i in range(warmup):
            tr.train_step(batches[i % len(batches)], 1, i + 1)
    # interleaved step by step, so that drift of the machine's speed hits every method alike
    for _ in range(repeats):
        for i in range(steps):
            for key, tr in trainers.items():
                timer = timers.get(key)
                before = timer.seconds if timer else 0.0
                t0 = time.perf_counter()
                tr.train_step(batches[i % len(batches)], 1, i + 1)
                times[key].append(time.perf_counter() - t0)
                if timer:
                    solver[key] += timer.seconds - before
    ew = statistics.median(times[("ew", None)])
    for key, ts in times.items():
        med = statistics.median(ts)
        rows.append({"dataset": dataset, "method": key[0], "space": key[1] or "-", "step_ms": 1000 * med,
                     "ratio": med / ew, "solver_share": solver[key] / sum(ts) if key in timers else None})
    return rows


def epoch_time(dataset: str = "multi_digits") -> float:
    tr = Trainer(TrainConfig(dataset=dataset, method="ew", epochs=1, seed=0))
    t0 = time.perf_counter()
    tr.train_epoch()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(BENCH_OPTIONS))
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps x {args.repeats} rounds per method")
    for ds in args.datasets:
        rows = measure(ds, args.methods, args.steps, args.repeats)
        print(f"\n## {ds}\n\n| method | space | step ms | x EW | solver share |\n|---|---|---:|---:|---:|")
        for r in sorted(rows, key=lambda r: (r["space"] != "-", r["ratio"])):
            share = f"{100 * r['solver_share']:.0f}%" if r["solver_share"] is not None else ""
            print(f"| {r['method']} | {r['space']} | {r['step_ms']:.2f} | {r['ratio']:.3f} | {share} |")
    torch.set_num_threads(2)
    print(f"\none full EW epoch of multi_digits (default size, 2 threads): {epoch_time():.2f} s")


if __name__ == "__main__":
    main()
