"""The litmus verdict: is a method better than, worse than, or equivalent to random weighting?

Per dataset x arch x variant against a baseline (RLW, and EW), on Delta-m
(percent points, measured against a fixed ``reference``):

* ``better`` / ``worse``: the two-sided test of the Delta-m difference is
  significant after correction over the family (all variants and datasets
  compared with that baseline), and the difference is not shown to lie
  within the margin;
* ``equivalent``: two one-sided tests (TOST, statsmodels ``ttost_ind`` /
  ``ttost_paired``) place the difference within ``[-margin, +margin]``
  (corrected the same way) -- a significant difference smaller than the
  declared margin is also ``equivalent`` (negligible);
* ``inconclusive``: neither; the reason says why (too few seeds, floor of
  the exact test above the corrected alpha, wide interval).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from .errors import AnalysisError
from .stats import DELTA, compare, correct

VERDICTS = ("better", "worse", "equivalent", "inconclusive")
TESTS = {"perm": "p_perm", "t": "p_t"}


def _tost(x: np.ndarray, y: np.ndarray, paired: bool, margin: float) -> float:
    if len(x) < 2 or len(y) < 2 or (np.var(x) == 0 and np.var(y) == 0):
        return np.nan
    if paired:
        return float(ttost_paired(x, y, -margin, margin)[0])
    return float(ttost_ind(x, y, -margin, margin, usevar="unequal")[0])


def decide(diff: float, p_adj: float, p_tost_adj: float, alpha: float, n: int, m: int,
           min_p: float, family: int) -> tuple[str, str]:
    """(verdict, reason) from the corrected superiority and equivalence p-values."""
    if n < 2 or m < 2:
        return "inconclusive", f"needs at least 2 seeds per side (has {n} vs {m})"
    equivalent = np.isfinite(p_tost_adj) and p_tost_adj < alpha
    different = np.isfinite(p_adj) and p_adj < alpha
    if different and not equivalent:
        return ("better" if diff > 0 else "worse"), f"p_adj = {p_adj:.3g} < {alpha}"
    if equivalent:
        extra = f" (difference significant, p_adj = {p_adj:.3g}, but negligible)" if different else ""
        return "equivalent", f"TOST p_adj = {p_tost_adj:.3g} < {alpha}{extra}"
    if min_p >= alpha / max(family, 1):
        return "inconclusive", (f"design cannot reach significance: smallest exact p {min_p:.3g} "
                                f">= alpha/{family} = {alpha / max(family, 1):.3g}")
    return "inconclusive", f"p_adj = {p_adj:.3g}, TOST p_adj = {p_tost_adj:.3g}"


def verdicts(frame: pd.DataFrame, against: str = "rlw", reference: str = "ew", margin: float = 0.5,
             alpha: float = 0.05, correction: str = "holm", test: str = "perm", per: str = "task",
             n_resamples: int = 9999, seed: int = 0, skip_missing: bool = False) -> pd.DataFrame:
    """One row per dataset x arch x variant: the verdict against ``against`` with the numbers behind it.

    ``margin`` is the equivalence margin in Delta-m points (declare it; 0.5 by
    default). ``test``: ``"perm"`` (exact permutation, default) or ``"t"``
    (Welch / paired t) for the superiority test.
    """
    if test not in TESTS:
        raise AnalysisError(f"test must be one of {sorted(TESTS)}, got {test!r}")
    if margin <= 0:
        raise AnalysisError(f"the equivalence margin must be positive, got {margin}")
    cmp = compare(frame, baseline=against, reference=reference, per=per, correction=correction,
                  n_resamples=n_resamples, seed=seed, skip_missing=skip_missing,
                  confidence=1 - alpha)
    skipped = cmp.attrs.get("skipped", [])
    if cmp.empty:
        out = pd.DataFrame(columns=["dataset", "arch", "variant", "against", "verdict"])
        out.attrs["skipped"] = skipped
        return out
    d = cmp[cmp["task"] == DELTA].copy()
    d["p"] = d[TESTS[test]]
    d["p_adj"] = correct(d["p"], correction)
    d["p_tost"] = [_tost(np.asarray(x), np.asarray(y), p, margin) for x, y, p in zip(d["x"], d["y"], d["paired"])]
    d["p_tost_adj"] = correct(d["p_tost"], correction)
    family = int(d["p"].notna().sum())
    decided = [decide(r.diff, r.p_adj, r.p_tost_adj, alpha, r.n_method, r.n_baseline, r.min_p, family)
               for r in d.itertuples()]
    d["verdict"] = [v for v, _ in decided]
    d["reason"] = [r for _, r in decided]
    d["against"] = d["baseline"]
    d["margin"] = margin
    d["family_size"] = family
    d["test"] = test
    cols = ["dataset", "arch", "variant", "against", "verdict", "diff", "ci_low", "ci_high", "p", "p_adj",
            "p_tost", "p_tost_adj", "hedges_g", "a12", "n_method", "n_baseline", "paired", "min_p",
            "margin", "family_size", "test", "reference", "reason"]
    out = d[cols].rename(columns={"diff": "diff_delta_m"}).reset_index(drop=True)
    out.attrs["skipped"] = skipped
    return out
