"""Honest power: the smallest p-value a design can reach and the seeds an effect needs.

Exact tests have a floor: an exact two-sided permutation test of n vs m seeds
cannot go below 2 / C(n+m, n) (n == m; 1 / C otherwise) -- 0.10 for 3 vs 3,
0.029 for 4 vs 4, 0.0079 for 5 vs 5 -- and a paired sign-flip test below
2 / 2^n. A Holm family of F comparisons needs the smallest p below alpha / F.
Seeds needed come from statsmodels' t-test power (Cohen's d = effect / sd).
"""

from __future__ import annotations

import math

import numpy as np
from statsmodels.stats.power import TTestIndPower


def min_p_independent(n: int, m: int, n_resamples: int | None = None) -> float:
    """Smallest two-sided p of an exact permutation test of n vs m samples (Monte Carlo floor if larger)."""
    if n < 1 or m < 1:
        return 1.0
    combos = math.comb(n + m, n)
    if n_resamples is not None and combos > n_resamples:
        return 1.0 / (n_resamples + 1)
    return min(1.0, (2.0 if n == m else 1.0) / combos)


def min_p_paired(n: int, n_resamples: int | None = None) -> float:
    """Smallest two-sided p of an exact sign-flip (paired permutation) or Wilcoxon test on n pairs."""
    if n < 1:
        return 1.0
    if n_resamples is not None and 2 ** n > n_resamples:
        return 1.0 / (n_resamples + 1)
    return min(1.0, 2.0 / 2 ** n)


def can_reach(min_p: float, alpha: float, family: int, correction: str = "holm") -> bool:
    """Whether the best possible p survives the correction (Holm/Bonferroni first step: alpha / family;
    Benjamini-Hochberg: the same bound for a lone discovery)."""
    return min_p < alpha / max(family, 1)


def seeds_needed(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Seeds per method for a two-sided Welch-like t-test to detect ``effect`` with noise ``sd`` (ceil)."""
    if not (np.isfinite(effect) and np.isfinite(sd)) or effect == 0 or sd <= 0:
        return float("nan")
    d = abs(effect) / sd
    # statsmodels' root finder fails for large effects: scan n with its power function instead.
    # Its noncentral t returns NaN for very large noncentrality (d * sqrt(n / 2) > ~8), where power is ~1.
    ns = np.arange(2, 2001)
    pw = TTestIndPower().power(effect_size=d, nobs1=ns, alpha=alpha, ratio=1.0)
    pw = np.where(np.isnan(pw) & (d * np.sqrt(ns / 2) > 8), 1.0, pw)
    reached = pw >= power
    return float(ns[np.argmax(reached)]) if reached.any() else float("inf")


def power_warnings(n_min_pairs: list[tuple[int, int, bool]], alpha: float, family: int,
                   n_resamples: int | None = None) -> list[str]:
    """Plain-language warnings for designs (n_method, n_baseline, paired) that cannot reach significance."""
    out = []
    for n, m, paired in sorted(set(n_min_pairs)):
        floor = min_p_paired(n, n_resamples) if paired else min_p_independent(n, m, n_resamples)
        kind = f"paired test on {n} shared seeds" if paired else f"{n} vs {m} seeds"
        if floor >= alpha:
            out.append(f"{kind}: an exact two-sided p cannot go below {floor:.3g} >= alpha {alpha}; "
                       "no comparison of this size can be significant")
        elif not can_reach(floor, alpha, family):
            out.append(f"{kind}: the smallest exact p is {floor:.3g}, above alpha/{family} = "
                       f"{alpha / family:.3g} needed by Holm over the {family} comparisons; "
                       "nothing can be significant after correction")
    return out
