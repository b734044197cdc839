"""Interquartile mean and probability of improvement with stratified bootstrap CIs
(Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice"), over
runs (seeds) x tasks (datasets). Written for litmus in numpy.

Scores are per-seed Delta-m per dataset; the bootstrap resamples seeds
independently within each dataset (the strata), keeping the dataset set fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

Runs = Sequence[np.ndarray]  # one array of per-seed scores per dataset


def _iqm_batch(runs: Sequence[np.ndarray]) -> np.ndarray:
    """IQM over the last axis of runs pooled across datasets; arrays [..., n_d]. Finite values: scipy's
    ``trim_mean(a, 0.25, axis=-1)`` computed as scipy does it (partition, mean of the middle), without its
    per-call NaN and broadcasting checks; otherwise scipy's own (its NaN policy)."""
    a = np.concatenate(runs, axis=-1)
    nobs = a.shape[-1]
    if not nobs or not np.isfinite(a).all():
        return stats.trim_mean(a, 0.25, axis=-1)
    low = int(0.25 * nobs)
    return np.mean(np.partition(a, (low, nobs - low - 1), axis=-1)[..., low:nobs - low], axis=-1)


def _poi_batch(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over datasets of P(X > Y) + P(X = Y)/2; arrays [..., n_d]."""
    probs = [(x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
             + 0.5 * (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1)) for x, y in zip(xs, ys)]
    return np.mean(probs, axis=0)


def iqm(runs: Runs) -> float:
    """Interquartile mean of all runs pooled: the mean of the middle 50% (scipy trim_mean 25%)."""
    return float(_iqm_batch([np.asarray(r, float) for r in runs]))


def probability_of_improvement(x_runs: Runs, y_runs: Runs) -> float:
    """P(X > Y) averaged over datasets: per dataset the Mann-Whitney probability (ties count 1/2)."""
    return float(_poi_batch([np.asarray(r, float) for r in x_runs], [np.asarray(r, float) for r in y_runs]))


def _resample(runs: Runs, n_resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per dataset a [n_resamples, n_d] matrix of runs drawn with replacement within that dataset."""
    return [np.asarray(r, float)[i] for r, i in zip(runs, _draws([len(r) for r in runs], n_resamples, rng))]


def _draws(sizes: Sequence[int], n_resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per dataset the [n_resamples, n_d] indices of a stratified bootstrap (the draws of :func:`_resample`)."""
    return [rng.integers(0, n, (n_resamples, n)) for n in sizes]


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """[B, n] multiplicities of each run in each bootstrap resample ``idx`` [B, n_draws]."""
    b = len(idx)
    flat = (idx + (np.arange(b) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)


def _poi_counts(x_sizes: tuple[int, ...], y_sizes: tuple[int, ...], n_resamples: int, seed: int,
                memo: dict | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per dataset the bootstrap multiplicities [B, n] of x and of y, drawn as :func:`improvement_ci` draws
    them (x's datasets, then y's, from ``default_rng(seed)``). They depend on the sizes and the seed only,
    so a table of many variants with the same seeds draws them once (``memo``)."""
    key = (x_sizes, y_sizes, n_resamples, seed)
    if memo is not None and key in memo:
        return memo[key]
    rng = np.random.default_rng(seed)
    ix, iy = _draws(x_sizes, n_resamples, rng), _draws(y_sizes, n_resamples, rng)
    out = ([_counts(a, n) for a, n in zip(ix, x_sizes)], [_counts(b, m) for b, m in zip(iy, y_sizes)])
    if memo is not None:
        memo.clear()  # one shape at a time: bounded memory
        memo[key] = out
    return out


def _cumulative(cy: np.ndarray, y: np.ndarray, order: np.ndarray, start: int, batch: int,
                memo: dict | None) -> np.ndarray:
    """[batch, m + 1] cumulative multiplicities of y's draws over the sorted y (0 first); shared by the
    variants of a table compared with the same baseline runs (``memo``, keyed by the arrays themselves)."""
    key = ("cum", id(cy), id(y), start)
    if memo is not None and key in memo and memo[key][0] is cy and memo[key][1] is y:
        return memo[key][2]
    part = cy[start:start + batch]
    cum = np.zeros((len(part), len(y) + 1))
    np.cumsum(part[:, order], axis=1, out=cum[:, 1:])
    if memo is not None:
        memo[key] = (cy, y, cum)  # the arrays are kept alive with it: their ids stay theirs
    return cum


def _poi_boot(x_runs: Runs, y_runs: Runs, n_resamples: int, seed: int, memo: dict | None = None,
              batch: int = 2048) -> np.ndarray:
    """Bootstrap replicates of :func:`probability_of_improvement` without the [B, n, m] comparison cube.

    A resample with multiplicities c_x (of x's runs) and c_y has P = (sum_i c_x,i L_i + (sum_i c_x,i E_i) / 2)
    / (n m) with L_i the number of drawn y below x_i and E_i the number equal to it: cumulative sums of
    c_y over the sorted y, read at x_i's positions (O(B (n + m)) per dataset, not O(B n m)). Every sum is
    an integer, exact in float64, so the result equals the element-wise mean over the resampled values bit
    for bit (the same draws, the same divisions). Resamples are processed ``batch`` at a time."""
    xs = [np.asarray(r, float) for r in x_runs]
    ys = [r if isinstance(r, np.ndarray) and r.dtype == float else np.asarray(r, float) for r in y_runs]
    cxs, cys = _poi_counts(tuple(map(len, xs)), tuple(map(len, ys)), n_resamples, seed, memo)
    probs = []
    for x, y, cx, cy in zip(xs, ys, cxs, cys):
        n, m = len(x), len(y)
        p = np.empty(n_resamples)
        if np.isnan(x).any() or np.isnan(y).any():  # NaN compares false both ways: the direct product
            w = np.concatenate([x[:, None] > y[None, :], x[:, None] == y[None, :]], axis=1).astype(float)
            for s in range(0, n_resamples, batch):
                t = cx[s:s + batch] @ w
                gt, eq = (t[:, :m] * cy[s:s + batch]).sum(axis=1), (t[:, m:] * cy[s:s + batch]).sum(axis=1)
                p[s:s + batch] = gt / (n * m) + 0.5 * (eq / (n * m))
            probs.append(p)
            continue
        order = np.argsort(y, kind="stable")
        below = np.searchsorted(y[order], x, side="left")   # y_j < x_i  for j < below_i
        upto = np.searchsorted(y[order], x, side="right")   # y_j <= x_i for j < upto_i
        ties = bool((upto != below).any())
        for s in range(0, n_resamples, batch):
            cum = _cumulative(cy, y, order, s, batch, memo)
            c = cx[s:s + batch]
            gt = np.einsum("ij,ij->i", c, cum[:, below])
            eq = (np.einsum("ij,ij->i", c, cum[:, upto] - cum[:, below]) if ties
                  else np.zeros(len(c)))  # no x equals any y: no ties in any resample either
            p[s:s + batch] = gt / (n * m) + 0.5 * (eq / (n * m))
        probs.append(p)
    return np.mean(probs, axis=0)


def _ci(point: float, boots: np.ndarray, confidence: float) -> tuple[float, float, float]:
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(boots, [tail, 1 - tail])
    return float(point), float(lo), float(hi)


def iqm_ci(runs: Runs, n_resamples: int = 2000, confidence: float = 0.95,
           seed: int = 0, memo: dict | None = None) -> tuple[float, float, float]:
    """(IQM, low, high) with a stratified percentile bootstrap CI. ``memo``: a dict shared by the calls of one
    table (the draws depend on the runs' sizes and the seed only: drawn once)."""
    sizes = tuple(len(r) for r in runs)
    key = ("iqm", sizes, n_resamples, seed)
    if memo is None or key not in memo:
        draws = _draws(sizes, n_resamples, np.random.default_rng(seed))
        if memo is not None:
            memo.clear()
            memo[key] = draws
    else:
        draws = memo[key]
    boots = _iqm_batch([np.asarray(r, float)[i] for r, i in zip(runs, draws)])
    return _ci(iqm(runs), boots, confidence)


def improvement_ci(x_runs: Runs, y_runs: Runs, n_resamples: int = 2000, confidence: float = 0.95,
                   seed: int = 0, memo: dict | None = None) -> tuple[float, float, float]:
    """(P(X > Y), low, high), resampling both methods' runs within each dataset independently.
    ``memo``: a dict shared by the calls of one table (the draws of equal-sized runs are computed once)."""
    return _ci(probability_of_improvement(x_runs, y_runs), _poi_boot(x_runs, y_runs, n_resamples, seed, memo),
               confidence)


def runs_by_variant(per_seed, value: str = "delta_m") -> dict[str, list[np.ndarray]]:
    """Variant -> per-dataset arrays of finite per-seed scores (variants on every dataset only)."""
    blocks = sorted(per_seed[["dataset", "arch"]].drop_duplicates().itertuples(index=False, name=None))
    out = {}
    for variant, g in per_seed.groupby("variant", observed=True):
        by_block = {k: s.to_numpy(float) for k, s in g.groupby(["dataset", "arch"], observed=True, sort=False)[value]}
        arrays = []
        for d, a in blocks:
            v = by_block.get((d, a), np.empty(0))
            v = v[np.isfinite(v)]
            if len(v) == 0:
                break
            arrays.append(v)
        else:
            out[str(variant)] = arrays
    return out


def iqm_table(per_seed, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
              runs: dict[str, list[np.ndarray]] | None = None):
    """DataFrame variant, iqm, ci_low, ci_high across all datasets (``runs``: :func:`runs_by_variant`
    of ``per_seed`` when already computed)."""
    import pandas as pd
    rows = []
    memo: dict = {}
    for variant, runs in (runs_by_variant(per_seed) if runs is None else runs).items():
        p, lo, hi = iqm_ci(runs, n_resamples=n_resamples, confidence=confidence, seed=seed, memo=memo)
        rows.append({"variant": variant, "iqm": p, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["variant", "iqm", "ci_low", "ci_high"]).sort_values("iqm", ascending=False)


def improvement_table(per_seed, baseline: str, n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0, runs: dict[str, list[np.ndarray]] | None = None):
    """DataFrame variant, P(variant > baseline) with CI across all datasets (``runs`` as in :func:`iqm_table`)."""
    import pandas as pd
    runs = runs_by_variant(per_seed) if runs is None else runs
    rows: list[dict] = []
    memo: dict = {}
    if baseline in runs:
        for variant, r in runs.items():
            if variant == baseline:
                continue
            p, lo, hi = improvement_ci(r, runs[baseline], n_resamples=n_resamples,
                                       confidence=confidence, seed=seed, memo=memo)
            rows.append({"variant": variant, "baseline": baseline, "p_improvement": p, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["variant", "baseline", "p_improvement", "ci_low", "ci_high"])
