"""Directional t inference on Delta-m differences, vectorised over many comparisons (pure numpy/scipy).

A comparison is method units ``x`` against baseline units ``y`` (one value per
seed, or per tuning replicate x seed). When the design pairs them (the same
seeds on both sides) the test is the one-sample t-test on the differences
``d = x - y``; otherwise Welch's t-test. With tuning replicates (K > 1) the
unit of replication is the replicate: the t-test runs on the K replicate means
of the paired differences (df = K - 1; exact for a balanced normal two-level
model, Bouthillier et al., MLSys 2021).

Every p-value here is one-sided:

* ``p_better``: H0 Delta <= 0 against H1 Delta > 0 (superiority, the claim
  "beats the baseline");
* ``p_worse``: H0 Delta >= 0 against Delta < 0;
* ``p_tost``: max of the two one-sided tests of |Delta| >= margin
  (Schuirmann 1987).

The interval matching a one-sided test at level ``a`` is the two-sided
``1 - 2a`` interval: its lower bound is > 0 exactly when ``p_better < a``, it
lies inside ``[-margin, margin]`` exactly when ``p_tost < a``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def t_summary(x: np.ndarray, y: np.ndarray, paired: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean difference, standard error, degrees of freedom) for G comparisons, X [G, n], Y [G, m]
    (rows of the same n, m). Paired: one-sample on X - Y; else Welch-Satterthwaite."""
    x = np.atleast_2d(np.asarray(x, float))
    y = np.atleast_2d(np.asarray(y, float))
    n, m = x.shape[1], y.shape[1]
    with np.errstate(all="ignore"):
        if paired:
            d = x - y
            mean = d.mean(axis=1)
            se = d.std(axis=1, ddof=1) / np.sqrt(n) if n >= 2 else np.full(len(d), np.nan)
            df = np.full(len(d), n - 1.0)
            return mean, se, df
        mean = x.mean(axis=1) - y.mean(axis=1)
        vx = x.var(axis=1, ddof=1) / n if n >= 2 else np.full(len(x), np.nan)
        vy = y.var(axis=1, ddof=1) / m if m >= 2 else np.full(len(y), np.nan)
        se = np.sqrt(vx + vy)
        df = (vx + vy) ** 2 / (vx ** 2 / (n - 1) + vy ** 2 / (m - 1))
        return mean, se, df


def clustered_summary(d: np.ndarray, cluster: np.ndarray) -> tuple[float, float, float]:
    """(mean, se, df) of paired differences ``d`` grouped by ``cluster`` (tuning replicate): the t-test on
    the cluster means, df = K - 1. With one cluster this is the ordinary one-sample t-test on ``d``."""
    d = np.asarray(d, float)
    labels = np.unique(cluster)
    if len(labels) <= 1:
        n = len(d)
        if n < 2:
            return (float(d.mean()) if n else np.nan), np.nan, np.nan
        return float(d.mean()), float(d.std(ddof=1) / np.sqrt(n)), float(n - 1)
    means = np.array([d[cluster == c].mean() for c in labels])
    k = len(means)
    return float(means.mean()), float(means.std(ddof=1) / np.sqrt(k)), float(k - 1)


def one_sided(mean: np.ndarray, se: np.ndarray, df: np.ndarray, margin: float | None = None
              ) -> dict[str, np.ndarray]:
    """One-sided p-values from (mean, se, df): ``p_better``, ``p_worse`` and, with ``margin``, ``p_tost``.
    A zero standard error with a non-zero mean gives p = 0 or 1 (a perfectly consistent difference);
    zero with zero mean, or fewer than 2 units, gives NaN (no test)."""
    mean, se, df = (np.asarray(a, float) for a in (mean, se, df))
    with np.errstate(all="ignore"):
        t = mean / se
        p_better = stats.t.sf(t, df)
        p_worse = stats.t.cdf(t, df)
        zero = (se == 0) & np.isfinite(df)
        p_better = np.where(zero, np.where(mean > 0, 0.0, np.where(mean < 0, 1.0, np.nan)), p_better)
        p_worse = np.where(zero, np.where(mean < 0, 0.0, np.where(mean > 0, 1.0, np.nan)), p_worse)
        out = {"p_better": p_better, "p_worse": p_worse}
        if margin is not None:
            lo = stats.t.sf((mean + margin) / se, df)   # H0: Delta <= -margin
            hi = stats.t.cdf((mean - margin) / se, df)  # H0: Delta >= +margin
            p_tost = np.maximum(lo, hi)
            inside = np.abs(mean) < margin
            p_tost = np.where(zero, np.where(inside, 0.0, 1.0), p_tost)
            p_tost = np.where(np.isfinite(df) & np.isfinite(mean), p_tost, np.nan)
            out["p_tost"] = p_tost
    return out


def interval(mean: np.ndarray, se: np.ndarray, df: np.ndarray, level: np.ndarray | float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided t interval at confidence ``level`` (per row allowed)."""
    mean, se, df = (np.asarray(a, float) for a in (mean, se, df))
    level = np.broadcast_to(np.asarray(level, float), mean.shape)
    with np.errstate(all="ignore"):
        q = stats.t.ppf(0.5 + level / 2, df)
        half = np.where(se == 0, 0.0, q * se)
    return mean - half, mean + half


def holm_levels(p: np.ndarray, alpha: float, correction: str = "holm") -> np.ndarray:
    """Per hypothesis, the local level its p-value is compared with by the step-down procedure, such
    that ``p < level`` exactly when the corrected p-value is below ``alpha``.

    Holm: the r-th smallest p is tested at alpha / (F - r + 1) while all smaller ones were rejected;
    from the first acceptance on, every remaining hypothesis is held to that acceptance's level.
    Bonferroni: alpha / F. None: alpha. Benjamini-Hochberg: alpha * k / F with k the number of
    rejections (at least 1). NaN p-values get NaN and do not count in F.
    """
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    f = int(ok.sum())
    if f == 0:
        return out
    q = p[ok]
    if correction == "none":
        lv = np.full(f, alpha)
    elif correction == "bonferroni":
        lv = np.full(f, alpha / f)
    elif correction == "holm":
        order = np.argsort(q, kind="stable")
        steps = alpha / (f - np.arange(f))
        rejected = np.logical_and.accumulate(q[order] < steps)
        first_accept = int(np.argmin(rejected)) if not rejected.all() else f
        lv_sorted = np.where(np.arange(f) < first_accept, steps, steps[min(first_accept, f - 1)])
        lv = np.empty(f)
        lv[order] = lv_sorted
    elif correction in ("bh", "fdr_bh"):
        order = np.argsort(q, kind="stable")
        below = q[order] <= alpha * np.arange(1, f + 1) / f
        k = int(np.max(np.nonzero(below)[0]) + 1) if below.any() else 1
        lv = np.full(f, alpha * k / f)
        # BH rejects every p <= alpha k / F; strict "<" matches the adjusted-p rule up to ties.
        lv = np.nextafter(lv, np.inf)
    else:
        raise ValueError(f"unknown correction {correction!r}")
    out[ok] = lv
    return out


def worst_fill(pool: np.ndarray, higher_is_better: bool) -> float:
    """The value a failed or diverged trial is scored with: the worst finite value of ``pool`` (all trials
    of its comparison group, every variant and seed): minimum when higher is better, else maximum.
    Worst-rank scoring (Lachin, Controlled Clinical Trials 1999) so that blowing up never helps."""
    pool = np.asarray(pool, float)
    pool = pool[np.isfinite(pool)]
    if not len(pool):
        return np.nan
    return float(pool.min() if higher_is_better else pool.max())
