"""Honest power: the smallest p-value a design can reach, whether a verdict is possible, and seeds needed.

Exact tests have a floor. An exact permutation test of n vs m independent seeds
cannot go below 1 / C(n+m, n) one-sided and 2 / C(n+m, n) two-sided (0.05 /
0.10 for 3 vs 3, 0.029 two-sided for 4 vs 3 and for 4 vs 4); a paired
sign-flip test on n shared seeds cannot go below 1 / 2^n one-sided (2 / 2^n
two-sided). A Holm family of F comparisons needs its smallest p below alpha / F.
A t-test has no floor (any n >= 2 can reach any p) but needs power: seeds
needed come from statsmodels' one-sample (paired) or two-sample t power at the
Bonferroni level alpha / F (Holm's first step; conservative for later steps).

:func:`check_design` is the pure check the study runner calls before a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.power import TTestIndPower, TTestPower

TESTS = ("t", "perm")
MAX_SEEDS = 2000


def min_p_independent(n: int, m: int, n_resamples: int | None = None, sided: str = "two") -> float:
    """Smallest p of an exact permutation test of n vs m samples, two-sided (2 / C(n+m, n)) or one-sided
    (1 / C); the Monte Carlo floor 1 / (R + 1) (doubled two-sided) when C exceeds ``n_resamples``."""
    n, m = int(n), int(m)
    if n < 1 or m < 1:
        return 1.0
    k = 2.0 if sided == "two" else 1.0
    combos = math.comb(n + m, n)
    if n_resamples is not None and combos > n_resamples:
        return min(1.0, k / (n_resamples + 1))
    return min(1.0, k / combos)


def min_p_paired(n: int, n_resamples: int | None = None, sided: str = "two") -> float:
    """Smallest p of an exact sign-flip (paired permutation) or Wilcoxon test on n pairs: 2 / 2^n
    two-sided, 1 / 2^n one-sided (Monte Carlo floor beyond ``n_resamples`` arrangements)."""
    n = int(n)
    if n < 1:
        return 1.0
    k = 2.0 if sided == "two" else 1.0
    if n_resamples is not None and 2 ** n > n_resamples:
        return min(1.0, k / (n_resamples + 1))
    return min(1.0, math.ldexp(k, -n))


def p_floor(test: str, n: int, m: int | None = None, paired: bool = True, sided: str = "one",
               n_resamples: int | None = None) -> float:
    """The smallest p-value ``test`` can give for the design (0 for a t-test with >= 2 units, 1 below)."""
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    m = n if m is None else m
    if test == "t":
        return 0.0 if (n >= 2 if paired else min(n, m) >= 2) else 1.0
    return min_p_paired(n, n_resamples, sided) if paired else min_p_independent(n, m, n_resamples, sided)


def can_reach(min_p: float, alpha: float, family: int, correction: str = "holm") -> bool:
    """Whether the best possible p survives the correction (Holm/Bonferroni first step: alpha / family;
    Benjamini-Hochberg: the same bound for a lone discovery; none: alpha)."""
    if correction == "none":
        return min_p < alpha
    return min_p < alpha / max(family, 1)


def _t_power(n: np.ndarray, d: float, alpha: float, paired: bool, sided: str) -> np.ndarray:
    alt = "larger" if sided == "one" else "two-sided"
    if paired:
        pw = TTestPower().power(effect_size=d, nobs=n, alpha=alpha, alternative=alt)
        big = d * np.sqrt(n) > 8
    else:
        pw = TTestIndPower().power(effect_size=d, nobs1=n, alpha=alpha, ratio=1.0, alternative=alt)
        big = d * np.sqrt(n / 2) > 8
    # statsmodels' noncentral t returns NaN for very large noncentrality, where power is ~1.
    return np.where(np.isnan(pw) & big, 1.0, pw)


def seeds_needed(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8, test: str = "t",
                 family_size: int = 1, paired: bool = True, sided: str = "one",
                 correction: str = "holm") -> float:
    """Seeds per method for ``test`` to detect ``effect`` (Delta-m points) with probability ``power``.

    ``sd``: the standard deviation of the per-seed differences (paired) or of one method's seeds
    (independent). The t power is the one-sample t-test on differences when ``paired`` (statsmodels
    ``TTestPower``), else the two-sample test (``TTestIndPower``), at alpha / family_size
    (Bonferroni, Holm's first step). For ``perm`` the answer is also at least the seeds at which the
    exact floor falls below that level. NaN for a zero or undefined effect, inf beyond 2,000 seeds.
    """
    if not (np.isfinite(effect) and np.isfinite(sd)) or effect == 0 or sd <= 0:
        return float("nan")
    level = alpha if correction == "none" else alpha / max(family_size, 1)
    d = abs(effect) / sd

    def ok(n: int) -> bool:
        if test == "perm" and p_floor("perm", n, n, paired, sided) >= level:
            return False
        return bool(_t_power(np.array([n]), d, level, paired, sided)[0] >= power)

    # power grows with n (and the exact floor falls): bisect between 2 and MAX_SEEDS
    if not ok(MAX_SEEDS):
        return float("inf")
    lo, hi = 1, MAX_SEEDS  # ok(hi) holds, lo is below the smallest n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mid >= 2 and ok(mid):
            hi = mid
        else:
            lo = mid
    return float(hi)


def seeds_possible(test: str, alpha: float, family_size: int, paired: bool = True, sided: str = "one",
                   correction: str = "holm") -> int:
    """The fewest seeds per method with which ``test`` could give a significant result at all."""
    level = alpha if correction == "none" else alpha / max(family_size, 1)
    for n in range(2, MAX_SEEDS + 1):
        if p_floor(test, n, n, paired, sided) < level:
            return n
    return MAX_SEEDS + 1


@dataclass(frozen=True)
class DesignCheck:
    """What a design of ``seeds`` per method can show (see :func:`check_design`)."""

    possible: bool          # can any outcome be significant after correction?
    min_p: float            # the test's floor for this design
    level: float            # the per-comparison level the smallest p must beat (alpha / family)
    seeds_possible: int     # fewest seeds with which an outcome could be significant
    seeds_for_power: float  # seeds for ``power`` at the given standardised effect (NaN when not asked)
    power: float            # power of this design at that effect (NaN when not asked)
    message: str            # one line for the user


def check_design(seeds: int, test: str = "t", family_size: int = 1, alpha: float = 0.05,
                 paired: bool = True, effect_size: float | None = None, power: float = 0.8,
                 correction: str = "holm", sided: str = "one", baseline_seeds: int | None = None,
                 replicates: int = 1, n_resamples: int | None = 9999) -> DesignCheck:
    """Whether a verdict design can decide, before anything runs.

    ``seeds``: final seeds per method (``baseline_seeds`` if the baseline has others: unpaired);
    ``family_size``: comparisons corrected together (datasets x archs x variants against one baseline);
    ``effect_size``: a standardised effect (Delta-m difference / sd of per-seed differences) for the
    power answer; ``replicates``: tuning replicates K (K > 1: the t-test runs on K replicate means, so
    its units are K, not the seeds). Sided ``one`` = the directional superiority test of the verdicts.
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if seeds < 1 or family_size < 1 or not 0 < alpha < 1:
        raise ValueError("seeds and family_size must be >= 1 and 0 < alpha < 1")
    m = seeds if baseline_seeds is None else baseline_seeds
    paired = paired and m == seeds
    units = replicates if (replicates > 1 and test == "t") else seeds
    floor = p_floor(test, units, m if units == seeds else units, paired, sided, n_resamples)
    level = alpha if correction == "none" else alpha / family_size
    possible = floor < level
    need = seeds_possible(test, alpha, family_size, paired, sided, correction)
    n_power, pw = float("nan"), float("nan")
    if effect_size is not None and effect_size > 0:
        n_power = seeds_needed(effect_size, 1.0, alpha, power, test, family_size, paired, sided, correction)
        pw = float(_t_power(np.array([units]), effect_size, level, paired, sided)[0]) if units >= 2 else 0.0
        if not possible:
            pw = 0.0
    unit = f"{units} tuning replicates" if units != seeds else f"{seeds} seeds"
    what = "exact permutation" if test == "perm" else "t"
    if not possible:
        why = (f"the {what} test's smallest p on {unit} is {floor:.3g}, not below alpha/{family_size} = "
               f"{level:.3g}" if test == "perm" else f"a t-test needs at least 2 units, has {unit}")
        msg = f"no outcome can be significant: {why}; {need} seeds per method would be needed"
    else:
        msg = f"a verdict is possible with {unit} ({what} test, level {level:.3g} per comparison)"
        if np.isfinite(pw):
            msg += f"; power {pw:.2f} at a standardised effect of {effect_size:g}"
            if pw < power:
                msg += f" ({n_power:g} seeds for {power:.0%})"
    return DesignCheck(bool(possible), float(floor), float(level), int(need), n_power, pw, msg)


def power_warnings(n_min_pairs: list[tuple[int, int, bool]], alpha: float, family: int,
                   n_resamples: int | None = None, test: str = "perm", sided: str = "one") -> list[str]:
    """Plain-language warnings for designs (n_method, n_baseline, paired) that cannot reach significance
    with ``test`` (a t-test only warns below 2 units; the exact test cites its floor)."""
    out = []
    for n, m, paired in sorted(set(n_min_pairs)):
        floor = p_floor(test, n, m, paired, sided, n_resamples)
        kind = f"paired test on {n} shared seeds" if paired else f"{n} vs {m} seeds"
        if test == "t":
            if floor >= 1.0:
                out.append(f"{kind}: a t-test needs at least 2 seeds per side; nothing can be significant")
            continue
        if floor >= alpha:
            out.append(f"{kind}: an exact {sided}-sided p cannot go below {floor:.3g} >= alpha {alpha}; "
                       "no comparison of this size can be significant")
        elif not can_reach(floor, alpha, family):
            out.append(f"{kind}: the smallest exact p is {floor:.3g}, above alpha/{family} = "
                       f"{alpha / family:.3g} needed by Holm over the {family} comparisons; "
                       "nothing can be significant after correction")
    return out
