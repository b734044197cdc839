"""Cost of one ``direction`` call of each gradient method on random Jacobians (the solver's share of a step).

    python bench/direction_cost.py [--sizes 3x100000 10x100000 40x20000] [--repeats 7] [--methods mgda cagrad ...]

CPU, one thread, float32, the process's CPU time (robust to other jobs on a shared machine);
the best of ``--repeats`` calls after one warm-up call on the same
Jacobian (stateful methods such as Nash-MTL are then warm-started, as in training). Jacobians are
Gaussian with a common component (conflicting but not opposite tasks). Printed: milliseconds per
call, with the plain sum ``J.sum(0)`` as the floor, and the load average.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from trainables.weighting import registry

DEFAULT = ["rgw", "mgda", "pcgrad", "gradvac", "imtl_g", "aligned_mtl", "upgrad", "cagrad", "fairgrad", "nash_mtl"]


def best_ms(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return 1000 * best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["3x100000", "10x100000", "40x20000"])
    ap.add_argument("--methods", nargs="+", default=DEFAULT)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, CPU time, best of {args.repeats}; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("| T x P | plain sum | " + " | ".join(args.methods) + " |")
    print("|---|" + "---:|" * (len(args.methods) + 1))
    for size in args.sizes:
        t, p = (int(v) for v in size.split("x"))
        gen = torch.Generator().manual_seed(0)
        j = torch.randn(t, p, generator=gen) + 0.5 * torch.randn(1, p, generator=gen)
        losses = torch.rand(t, generator=gen) + 0.5
        cells = [f"{best_ms(lambda: j.sum(0), args.repeats):.3g}"]
        for name in args.methods:
            m = registry.build(name, t)  # random methods: their default seed
            cells.append(f"{best_ms(lambda: m.direction(j, losses), args.repeats):.3g}")
        print(f"| {t} x {p // 1000}k | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
