"""Tuning variance: two levels, tuning replicate -> seed (Bouthillier et al., "Accounting for Variance in
Machine Learning Benchmarks", MLSys 2021).

With ``tuning.replicates: K`` every method is tuned K times independently and
each replicate's winner runs on the final seeds, so a per-seed Delta-m
difference carries two sources of noise: which hyperparameters the tuning
found (shared by the seeds of a replicate) and the seed. This module gives,
per comparison, the share of the variance due to tuning (one-way random
effects ANOVA estimate, truncated at 0) and a hierarchical bootstrap interval
(resample replicates, then seeds within each drawn replicate). The verdict's
t-test then runs on the K replicate means (:func:`analysis.inference.clustered_summary`).
"""

from __future__ import annotations

import numpy as np


def variance_components(d: np.ndarray, cluster: np.ndarray) -> tuple[float, float, float]:
    """(between-replicate variance, within-replicate variance, tuning share) of values ``d`` grouped by
    ``cluster`` (one-way random effects, ANOVA estimator with n0 for unbalanced groups; NaN with < 2
    groups or no replication within them)."""
    d = np.asarray(d, float)
    labels, inv = np.unique(cluster, return_inverse=True)
    k, n = len(labels), len(d)
    if k < 2 or n <= k:
        return np.nan, np.nan, np.nan
    sizes = np.bincount(inv)
    means = np.bincount(inv, weights=d) / sizes
    grand = d.mean()
    msb = float((sizes * (means - grand) ** 2).sum() / (k - 1))
    msw = float(((d - means[inv]) ** 2).sum() / (n - k))
    n0 = (n - (sizes ** 2).sum() / n) / (k - 1)
    between = max(0.0, (msb - msw) / n0)
    total = between + msw
    return between, msw, (between / total if total > 0 else np.nan)


def hierarchical_bootstrap(d: np.ndarray, cluster: np.ndarray, confidence: float = 0.95,
                           n_resamples: int = 2000, rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile interval of the mean of ``d`` resampling replicates with replacement, then units within
    each drawn replicate (two-stage bootstrap; Davison & Hinkley 1997, sec. 3.8; Bouthillier et al. 2021)."""
    d = np.asarray(d, float)
    rng = rng if rng is not None else np.random.default_rng(0)
    labels, inv = np.unique(cluster, return_inverse=True)
    k = len(labels)
    if k < 2 or len(d) < 3:
        return np.nan, np.nan
    sizes = np.bincount(inv)
    width = sizes.max()
    table = np.full((k, width), np.nan)
    order = np.argsort(inv, kind="stable")
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    for j in range(k):
        table[j, :sizes[j]] = d[order[starts[j]:starts[j] + sizes[j]]]
    pick = rng.integers(0, k, size=(n_resamples, k))                    # replicates
    u = rng.random((n_resamples, k, width))                             # units within them
    unit = np.minimum((u * sizes[pick][:, :, None]).astype(int), sizes[pick][:, :, None] - 1)
    vals = table[pick[:, :, None], unit]
    valid = np.arange(width)[None, None, :] < sizes[pick][:, :, None]
    rep_means = np.where(valid, vals, 0.0).sum(axis=2) / sizes[pick]
    stats = rep_means.mean(axis=1)
    a = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return float(lo), float(hi)


def tuning_columns(x: list, y: list, clusters: list, paired: bool, confidence: float,
                   rng: np.random.Generator, n_resamples: int = 2000) -> dict[str, float]:
    """Per verdict row: ``tuning_share`` and the hierarchical bootstrap interval ``hb_low, hb_high`` of the
    Delta-m difference (paired differences; unpaired: the method's values minus the baseline's mean)."""
    x, y, c = np.asarray(x, float), np.asarray(y, float), np.asarray(clusters)
    d = x - y if paired else x - (y.mean() if len(y) else np.nan)
    _, _, share = variance_components(d, c)
    lo, hi = hierarchical_bootstrap(d, c, confidence, n_resamples, rng)
    return {"tuning_share": share, "hb_low": lo, "hb_high": hi}
