"""Group-sequential verdicts by simulation: error rates, decisions at `start`, seeds vs a fixed design.

    python bench/sequential.py [--studies 4000] [--family 10]

Per-seed paired Delta-m differences are normal with sd 1 (effects in sd units); every
study has ``--family`` comparisons. Prints, for the Pocock-type (default) and
O'Brien-Fleming-type spending: the t statistic the first look needs and its nominal
one-sided p-value; the familywise type-I error with all effects zero (false better/worse) and at the
margin (false equivalence/worse); the share of 5-sd effects decided at `start`; the power
at the design effect; and the seeds spent on a mixed family against the fixed paired
design with the same power (one-sample t power, statsmodels).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, not bench/analysis.py

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from analysis.sequential import Design, fixed_seeds_for_power, simulate, thresholds  # noqa: E402

MIXTURE = np.array([5.0, 5.0, 3.0, 2.0, 1.0, 1.0, 0.5, 0.0, 0.0, -3.0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=4000)
    ap.add_argument("--family", type=int, default=10)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--margin", type=float, default=0.5)
    ap.add_argument("--effect", type=float, default=1.0, help="design effect (sd units) for the power comparison")
    args = ap.parse_args()
    F, a, m, N = args.family, args.alpha, args.margin, args.studies
    mixture = np.resize(MIXTURE, F)
    print(f"family {F}, alpha {a}, margin {m} sd, {N} simulated studies per row; mixture {mixture.tolist()}")
    print("| spending | start/step/max | t needed at 1st look (df) | its nominal p | FWER, all zero | FWER at margin "
          "| 5-sd decided at start | power at d=%.1f | seeds, mixture | fixed design, same power | saved |" % args.effect)
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    t0 = time.time()
    for kind in ("pocock", "obf"):
        for start, step, mx in ((5, 5, 20), (5, 5, 25), (5, 5, 30)):
            des = Design(start, step, mx, a, F, kind)
            t_need = thresholds(des)[0][0]
            lvl = stats.t.sf(t_need, start - 1)
            st0, _ = simulate(des, np.zeros(F), 1.0, m, N, 1)
            fw0 = np.mean(((st0 == "better") | (st0 == "worse")).any(1))
            stm, _ = simulate(des, np.full(F, m), 1.0, m, N, 2)
            fwm = np.mean(((stm == "equivalent") | (stm == "worse")).any(1))
            st5, u5 = simulate(des, np.full(F, 5.0), 1.0, m, N, 3)
            early = np.mean((st5 == "better") & (u5 == start))
            std, _ = simulate(des, np.full(F, args.effect), 1.0, m, N, 4)
            power = np.mean(std == "better")
            stx, ux = simulate(des, mixture, 1.0, m, N, 5)
            n_fixed = fixed_seeds_for_power(args.effect, 1.0, a / (2 * F), float(power))
            seq, fixed = ux.sum(1).mean(), n_fixed * F
            print(f"| {kind} | {start}/{step}/{mx} | {t_need:.3g} ({start - 1}) | {lvl:.2g} | {fw0:.3f} | {fwm:.3f} "
                  f"| {early:.2f} | {power:.2f} | {seq:.0f} | {fixed} ({n_fixed} x {F}) | {1 - seq / fixed:.0%} |")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
