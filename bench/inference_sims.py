"""The simulation numbers of docs/statistics.md: interval coverage, size and power of the verdict test,
the diverged-seed case, tuning variance. Larger runs of the functions the tests check (analysis/simulation.py).

    PYTHONPATH=. python bench/inference_sims.py            # about a minute on 2 cores
    PYTHONPATH=. python bench/inference_sims.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import simulation as sim  # noqa: E402
from analysis.power import check_design  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    studies = 200 if args.quick else 600
    reps = 4000 if args.quick else 20000
    t0 = time.perf_counter()

    print("## Coverage of the 95% Delta-m interval (analysis.delta_m), simulated studies:", studies)
    print("| seeds | paired | unpaired (baseline has one more seed) |\n|---:|---:|---:|")
    for n in (3, 5, 10, 12):
        print(f"| {n} | {sim.interval_coverage(n, studies, rng_seed=n):.3f} | "
              f"{sim.interval_coverage(n, studies, paired=False, rng_seed=100 + n):.3f} |")

    print(f"\n## Default verdict test (one-sided paired t), alpha = 0.05, {reps} draws per cell")
    print("| seeds | noise | P(better), no effect | P(worse), no effect | 90% interval coverage | "
          "P(better), 1 sd | P(better), 2 sd | P(equivalent) on the margin |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in (3, 5, 10):
        for kind in ("normal", "t3", "lognormal"):
            null = sim.directional_rates(n, 0.0, reps, kind=kind, rng_seed=1)
            p1 = sim.directional_rates(n, 1.0, reps, kind=kind, rng_seed=2)["better"]
            p2 = sim.directional_rates(n, 2.0, reps, kind=kind, rng_seed=3)["better"]
            eq = sim.directional_rates(n, 1.0, reps, kind=kind, rng_seed=4, margin_sd=1.0)["equivalent"]
            print(f"| {n} | {kind} | {null['better']:.4f} | {null['worse']:.4f} | {null['coverage']:.3f} | "
                  f"{p1:.3f} | {p2:.3f} | {eq:.4f} |")

    print("\n## Family of 28 (the quickstart against EW), Holm's first step alpha/28")
    print("| seeds | P(better), no effect | P(better), 2 sd | P(better), 4 sd | exact sign-flip possible? |")
    print("|---:|---:|---:|---:|---|")
    for n in (5, 8, 12):
        r0 = sim.directional_rates(n, 0.0, reps, family=28, rng_seed=5)["better"]
        r2 = sim.directional_rates(n, 2.0, reps, family=28, rng_seed=6)["better"]
        r4 = sim.directional_rates(n, 4.0, reps, family=28, rng_seed=7)["better"]
        print(f"| {n} | {r0:.4f} | {r2:.3f} | {r4:.3f} | {check_design(n, 'perm', 28).possible} |")

    print(f"\n## A diverged seed (analysis.verdicts end to end, 5 shared seeds, sd 1, {studies} studies)")
    print("| true difference | case | better | worse | equivalent | inconclusive |\n|---:|---|---:|---:|---:|---:|")
    for eff in (0.0, 1.5, 3.0):
        for label, kw in (("all seeds complete", {}), ("method's seed 4 diverged", {"diverged_seed": 4}),
                          ("baseline's seed 4 diverged", {"diverged_seed": 4, "diverged_variant": "rlw"})):
            r = sim.verdict_rates(5, eff, studies, rng_seed=9, **kw)
            print(f"| {eff:+.1f} | {label} | {r['better']:.3f} | {r['worse']:.3f} | {r['equivalent']:.3f} | "
                  f"{r['inconclusive']:.3f} |")
    n_tune = 300 if args.quick else 1000
    print(f"\n## Tuning variance: K replicates x 5 seeds, 90% intervals, {n_tune} simulated comparisons")
    print("| K | tuning sd / seed sd | naive t (replicates ignored) | replicate-mean t (verdict) | "
          "hierarchical bootstrap | estimated tuning share | true share |\n|---:|---:|---:|---:|---:|---:|---:|")
    for k in (3, 5):
        for tsd in (0.0, 0.5, 1.0):
            r = sim.tuning_coverage(k, 5, tsd, n_tune, rng_seed=k)
            print(f"| {k} | {tsd} | {r['naive t']:.3f} | {r['replicate-mean t']:.3f} | "
                  f"{r['hierarchical bootstrap']:.3f} | {r['estimated share']:.2f} | {r['true share']:.2f} |")
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
