"""Comparisons across datasets (Demsar 2006; Garcia & Herrera 2008).

Blocks are dataset (x arch) rows, treatments are variants, the score is
Delta-m (higher is better, rank 1 = best). Friedman's test with the
Iman-Davenport F correction, average ranks, the Nemenyi critical difference,
and pairwise Wilcoxon signed-rank tests with Holm's correction (the cliques of
the critical-difference diagram are the groups no pair of which differs).
Only variants present on every block enter (the dropped ones are returned).
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from .errors import AnalysisError
from .stats import correct


def score_matrix(dm: pd.DataFrame, value: str = "delta_m") -> tuple[pd.DataFrame, list[str]]:
    """Blocks x variants matrix of ``value`` from :func:`analysis.delta_m` output; complete columns only."""
    m = dm.pivot_table(index=["dataset", "arch"], columns="variant", values=value, aggfunc="mean")
    complete = m.columns[m.notna().all()]
    dropped = sorted(set(m.columns) - set(complete))
    return m[complete], dropped


def average_ranks(matrix: pd.DataFrame) -> pd.Series:
    """Mean rank per variant (1 = best, ties share the average rank)."""
    return matrix.rank(axis=1, ascending=False, method="average").mean().sort_values()


def friedman(matrix: pd.DataFrame) -> dict[str, float]:
    """Friedman chi-square (scipy) and the Iman-Davenport F statistic with its p-value."""
    n, k = matrix.shape
    if k < 3 or n < 2:
        raise AnalysisError(f"Friedman needs >= 3 variants on >= 2 datasets (has {k} on {n})")
    chi2, p = stats.friedmanchisquare(*[matrix[c].to_numpy(float) for c in matrix.columns])
    denom = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denom if denom > 0 else np.inf
    p_f = float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))) if np.isfinite(f) else 0.0
    return {"n_datasets": n, "k_variants": k, "chi2": float(chi2), "p_chi2": float(p),
            "iman_davenport_f": float(f), "p_iman_davenport": p_f}


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks: q_alpha * sqrt(k (k+1) / (6 n))."""
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(k * (k + 1) / (6.0 * n)))


def pairwise_wilcoxon(matrix: pd.DataFrame, correction: str = "holm") -> pd.DataFrame:
    """Wilcoxon signed-rank test (exact when possible) for every pair of variants, Holm-corrected.

    Pairs whose differences have no zero, tie or NaN (the usual case with continuous Delta-m) go to scipy in
    one vectorised call (each column is tested exactly as alone: scipy's method choice depends on ties and
    zeros only); the others one by one."""
    pairs = list(itertools.combinations(matrix.columns, 2))
    values = matrix.to_numpy(float)
    col = {c: i for i, c in enumerate(matrix.columns)}
    d = np.stack([values[:, col[a]] - values[:, col[b]] for a, b in pairs], axis=1) if pairs else np.zeros((0, 0))
    p = np.full(len(pairs), np.nan)
    a_sorted = np.sort(np.abs(d), axis=0)
    clean = ~(np.isnan(d).any(axis=0) | (d == 0).any(axis=0) | (np.diff(a_sorted, axis=0) == 0).any(axis=0))
    if len(d) and clean.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            p[clean] = np.atleast_1d(stats.wilcoxon(d[:, clean], axis=0).pvalue)
    for j in np.flatnonzero(~clean):
        if np.all(d[:, j] == 0):
            p[j] = 1.0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # scipy: exact p unavailable with ties/zeros
                p[j] = float(stats.wilcoxon(d[:, j]).pvalue)
    rows = [{"a": a, "b": b, "median_diff": float(np.median(d[:, j])), "p": float(p[j])}
            for j, (a, b) in enumerate(pairs)]
    out = pd.DataFrame(rows, columns=["a", "b", "median_diff", "p"])
    out["p_adj"] = correct(out["p"], correction) if len(out) else []
    return out


def cliques(ranks: pd.Series, pairwise: pd.DataFrame, alpha: float = 0.05) -> list[list[str]]:
    """Maximal runs of rank-ordered variants with no significant pairwise difference (for the CD diagram)."""
    names = list(ranks.index)
    sig = {frozenset((r.a, r.b)) for r in pairwise.itertuples() if r.p_adj < alpha}
    out: list[list[str]] = []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and all(frozenset((names[a], names[j + 1])) not in sig for a in range(i, j + 1)):
            j += 1
        if j > i and not any(i >= s and j <= e for s, e in [(names.index(c[0]), names.index(c[-1])) for c in out]):
            out.append(names[i:j + 1])
    return out


def min_p_wilcoxon(n: int) -> float:
    """Smallest exact two-sided Wilcoxon p on n datasets: 2 / 2^n (0.125 for 4, 0.031 for 6)."""
    return min(1.0, 2.0 / 2 ** n)
