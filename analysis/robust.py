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
    """IQM over the last axis of runs pooled across datasets; arrays [..., n_d]."""
    return stats.trim_mean(np.concatenate(runs, axis=-1), 0.25, axis=-1)


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
    out = []
    for r in runs:
        r = np.asarray(r, float)
        out.append(r[rng.integers(0, len(r), (n_resamples, len(r)))])
    return out


def _ci(point: float, boots: np.ndarray, confidence: float) -> tuple[float, float, float]:
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(boots, [tail, 1 - tail])
    return float(point), float(lo), float(hi)


def iqm_ci(runs: Runs, n_resamples: int = 2000, confidence: float = 0.95,
           seed: int = 0) -> tuple[float, float, float]:
    """(IQM, low, high) with a stratified percentile bootstrap CI."""
    rng = np.random.default_rng(seed)
    return _ci(iqm(runs), _iqm_batch(_resample(runs, n_resamples, rng)), confidence)


def improvement_ci(x_runs: Runs, y_runs: Runs, n_resamples: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> tuple[float, float, float]:
    """(P(X > Y), low, high), resampling both methods' runs within each dataset independently."""
    rng = np.random.default_rng(seed)
    boots = _poi_batch(_resample(x_runs, n_resamples, rng), _resample(y_runs, n_resamples, rng))
    return _ci(probability_of_improvement(x_runs, y_runs), boots, confidence)


def runs_by_variant(per_seed, value: str = "delta_m") -> dict[str, list[np.ndarray]]:
    """Variant -> per-dataset arrays of finite per-seed scores (variants on every dataset only)."""
    blocks = sorted(per_seed[["dataset", "arch"]].drop_duplicates().itertuples(index=False, name=None))
    out = {}
    for variant, g in per_seed.groupby("variant", observed=True):
        arrays = []
        for d, a in blocks:
            v = g.loc[(g["dataset"] == d) & (g["arch"] == a), value].to_numpy(float)
            v = v[np.isfinite(v)]
            if len(v) == 0:
                break
            arrays.append(v)
        else:
            out[str(variant)] = arrays
    return out


def iqm_table(per_seed, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0):
    """DataFrame variant, iqm, ci_low, ci_high across all datasets."""
    import pandas as pd
    rows = []
    for variant, runs in runs_by_variant(per_seed).items():
        p, lo, hi = iqm_ci(runs, n_resamples=n_resamples, confidence=confidence, seed=seed)
        rows.append({"variant": variant, "iqm": p, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["variant", "iqm", "ci_low", "ci_high"]).sort_values("iqm", ascending=False)


def improvement_table(per_seed, baseline: str, n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0):
    """DataFrame variant, P(variant > baseline) with CI across all datasets."""
    import pandas as pd
    runs = runs_by_variant(per_seed)
    rows = []
    if baseline in runs:
        for variant, r in runs.items():
            if variant == baseline:
                continue
            p, lo, hi = improvement_ci(r, runs[baseline], n_resamples=n_resamples,
                                       confidence=confidence, seed=seed)
            rows.append({"variant": variant, "baseline": baseline, "p_improvement": p, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=["variant", "baseline", "p_improvement", "ci_low", "ci_high"])
