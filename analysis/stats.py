"""Two-sample comparisons of a method against a baseline, per task x metric and for Delta-m.

For every dataset x arch x variant x task x metric: the seed means, their
difference, Welch's t-test (paired t-test when both share the same seeds)
with its confidence interval, an exact permutation test (scipy; sign-flip
when paired; Monte Carlo beyond ``n_resamples`` arrangements), Hedges' g and
Vargha-Delaney A12 (both direction-aware: > 0 / > 0.5 means the method is
better), and p-values corrected over the whole family (Holm by default,
Benjamini-Hochberg optional; statsmodels ``multipletests``).
Delta-m rows (task = metric = ``delta_m``) compare per-seed Delta-m against a
fixed reference (``reference``, default the baseline itself).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from .delta_m import per_seed, _as_selected
from .errors import AnalysisError
from .naming import has_baseline, resolve_baseline
from .power import min_p_independent, min_p_paired

DELTA = "delta_m"
CORRECTIONS = {"holm": "holm", "bh": "fdr_bh", "fdr_bh": "fdr_bh", "bonferroni": "bonferroni"}


def long_values(selected: pd.DataFrame, reference: str, per: str = "task",
                baseline_arch: str | None = None) -> pd.DataFrame:
    """Per-seed values: the selected task metrics plus one Delta-m row per trial (vs ``reference``)."""
    cols = ["dataset", "arch", "variant", "seed", "task", "metric", "higher_is_better", "value"]
    v = selected[cols].copy()
    for c in ["dataset", "arch", "variant", "task", "metric"]:
        v[c] = v[c].astype(str)
    d = per_seed(selected, reference, per, baseline_arch)
    d = d.assign(task=DELTA, metric=DELTA, higher_is_better=True, value=d["delta_m"])[cols]
    return pd.concat([v, d], ignore_index=True)


def pair_arrays(values: pd.DataFrame, baseline: str, baseline_arch: str | None = None,
                datasets_without: list[str] | None = None) -> pd.DataFrame:
    """One row per comparison with arrays ``x`` (method seeds) and ``y`` (baseline seeds), aligned by seed
    when the seed sets are equal (``paired``). Non-finite values are left out and counted."""
    v = values.sort_values("seed")
    finite = np.isfinite(v["value"].to_numpy(float))
    keys = ["dataset", "arch", "variant", "task", "metric", "higher_is_better"]
    g = v[finite].groupby(keys, observed=True, sort=True).agg(x=("value", list), sx=("seed", list)).reset_index()
    nonfinite = v[~finite].groupby(keys, observed=True).size().rename("n_nonfinite")
    g = g.merge(nonfinite.reset_index(), on=keys, how="left").fillna({"n_nonfinite": 0})
    bmap = {}
    for dataset, gd in g.groupby("dataset"):
        variants = gd["variant"].unique() if baseline_arch is None else gd.loc[gd["arch"] == baseline_arch, "variant"].unique()
        if has_baseline(baseline, variants):
            bmap[dataset] = resolve_baseline(baseline, variants)
        elif datasets_without is not None:
            datasets_without.append(dataset)
        else:
            raise AnalysisError(f"baseline {baseline!r} is absent from dataset {dataset!r}")
    g = g[g["dataset"].isin(list(bmap))].copy()
    g["baseline"] = g["dataset"].map(bmap)
    g["_barch"] = baseline_arch if baseline_arch is not None else g["arch"]
    b = g[["dataset", "arch", "variant", "task", "metric", "x", "sx"]].rename(
        columns={"arch": "_barch", "variant": "baseline", "x": "y", "sy": "sy", "sx": "sy"})
    out = g.merge(b, on=["dataset", "_barch", "baseline", "task", "metric"], how="inner")
    out = out[~((out["variant"] == out["baseline"]) & (out["arch"] == out["_barch"]))]
    out["paired"] = [len(a) >= 2 and a == c for a, c in zip(out["sx"], out["sy"])]
    out["n_method"] = out["x"].map(len)
    out["n_baseline"] = out["y"].map(len)
    return out.drop(columns=["_barch"]).reset_index(drop=True)


def _mean_diff(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _paired_mean(x, y, axis=-1):
    return np.mean(x - y, axis=axis)


def _tests_block(X: np.ndarray, Y: np.ndarray, sign: np.ndarray, paired: bool, confidence: float,
                 n_resamples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Vectorised tests for G comparisons of equal shape: X [G, n], Y [G, m]."""
    n, m = X.shape[1], Y.shape[1]
    out: dict[str, np.ndarray] = {}
    G = X.shape[0]
    nan = np.full(G, np.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Degenerate samples (zero variance) give NaN p-values: reported as NaN, not as an error.
        warnings.simplefilter("ignore", RuntimeWarning)
        if n >= 2 and m >= 2:
            t = stats.ttest_rel(X, Y, axis=1) if paired else stats.ttest_ind(X, Y, axis=1, equal_var=False)
            ci = t.confidence_interval(confidence)
            out.update(p_t=np.asarray(t.pvalue, float), ci_low=np.asarray(ci.low, float),
                       ci_high=np.asarray(ci.high, float))
            if paired:
                p = stats.permutation_test((X, Y), _paired_mean, permutation_type="samples", vectorized=True,
                                           n_resamples=n_resamples, axis=1, rng=rng).pvalue
            else:
                p = stats.permutation_test((X, Y), _mean_diff, permutation_type="independent", vectorized=True,
                                           n_resamples=n_resamples, axis=1, rng=rng, batch=max(1, 2_000_000 // (G * (n + m)))).pvalue
            out["p_perm"] = np.asarray(p, float)
            sp = np.sqrt(((n - 1) * X.var(axis=1, ddof=1) + (m - 1) * Y.var(axis=1, ddof=1)) / (n + m - 2))
            j = 1 - 3 / (4 * (n + m) - 9)
            out["hedges_g"] = sign * (X.mean(1) - Y.mean(1)) / sp * j
        else:
            out.update(p_t=nan, ci_low=nan, ci_high=nan, p_perm=nan, hedges_g=nan)
    sx, sy = X * sign[:, None], Y * sign[:, None]
    gt = (sx[:, :, None] > sy[:, None, :]).mean(axis=(1, 2))
    eq = (sx[:, :, None] == sy[:, None, :]).mean(axis=(1, 2))
    out["a12"] = gt + 0.5 * eq
    floor = min_p_paired(n, n_resamples) if paired else min_p_independent(n, m, n_resamples)
    out["min_p"] = np.full(G, floor)
    return out


def run_tests(pairs: pd.DataFrame, confidence: float = 0.95, n_resamples: int = 9999,
              seed: int = 0) -> pd.DataFrame:
    """Add test columns to :func:`pair_arrays` output, one vectorised call per (n, m, paired) shape."""
    rng = np.random.default_rng(seed)
    res = pairs.copy()
    res["mean_method"] = [float(np.mean(a)) if len(a) else np.nan for a in res["x"]]
    res["mean_baseline"] = [float(np.mean(a)) if len(a) else np.nan for a in res["y"]]
    res["diff"] = res["mean_method"] - res["mean_baseline"]
    res["rel_improvement_pct"] = np.where(res["task"] == DELTA, np.nan, np.where(
        res["higher_is_better"], 1.0, -1.0) * res["diff"] / res["mean_baseline"].abs() * 100)
    cols = ["p_t", "ci_low", "ci_high", "p_perm", "hedges_g", "a12", "min_p"]
    for c in cols:
        res[c] = np.nan
    for (n, m, paired), idx in res.groupby(["n_method", "n_baseline", "paired"]).groups.items():
        if n == 0 or m == 0:
            continue
        block = res.loc[idx]
        X = np.array(block["x"].tolist(), float)
        Y = np.array(block["y"].tolist(), float)
        sign = np.where(block["higher_is_better"].to_numpy(bool), 1.0, -1.0)
        for c, arr in _tests_block(X, Y, sign, bool(paired), confidence, n_resamples, rng).items():
            res.loc[idx, c] = arr
    return res


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (equal to statsmodels ``multipletests(method="holm")``,
    checked in the tests; statsmodels' Holm branch calls ``gc.collect()``, 0.1 s per call)."""
    p = np.asarray(p, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adj
    return out


def correct(p: pd.Series, method: str = "holm") -> pd.Series:
    """Family-wise (Holm, Bonferroni) or false-discovery (Benjamini-Hochberg, scipy) corrected p-values;
    NaN stays NaN and is not counted in the family."""
    if method not in CORRECTIONS:
        raise AnalysisError(f"correction must be one of {sorted(CORRECTIONS)}, got {method!r}")
    out = pd.Series(np.nan, index=p.index)
    ok = p.notna()
    if ok.any():
        values = p[ok].to_numpy(float)
        kind = CORRECTIONS[method]
        if kind == "holm":
            out[ok] = holm(values)
        elif kind == "fdr_bh":
            out[ok] = stats.false_discovery_control(values, method="bh")
        else:
            out[ok] = multipletests(values, method=kind)[1]
    return out


def compare(frame: pd.DataFrame, baseline: str = "rlw", reference: str | None = None, per: str = "task",
            confidence: float = 0.95, correction: str = "holm", n_resamples: int = 9999,
            baseline_arch: str | None = None, seed: int = 0, skip_missing: bool = False) -> pd.DataFrame:
    """Compare every variant with ``baseline`` per dataset x arch x task x metric and on Delta-m.

    ``frame``: output of :func:`analysis.select` (a raw frame is selected with
    best-val). ``reference``: the variant Delta-m is measured against
    (default: the baseline). ``p_t_adj`` and ``p_perm_adj`` are corrected over
    the whole returned family. ``skip_missing`` leaves out datasets without
    the baseline (listed in ``frame.attrs['skipped']``) instead of raising.
    """
    ref_name = reference or baseline
    sel = _as_selected(frame, ref_name)
    datasets_without: list[str] | None = [] if skip_missing else None
    if skip_missing:
        keep = [d for d, g in sel.groupby("dataset", observed=True)
                if has_baseline(ref_name, g["variant"].astype(str).unique())
                and has_baseline(baseline, g["variant"].astype(str).unique())]
        skipped = sorted(set(sel["dataset"].astype(str)) - set(map(str, keep)))
        sel = sel[sel["dataset"].isin(keep)]
        if sel.empty:
            out = pd.DataFrame()
            out.attrs["skipped"] = skipped
            return out
    values = long_values(sel, ref_name, per, baseline_arch)
    pairs = pair_arrays(values, baseline, baseline_arch, datasets_without)
    res = run_tests(pairs, confidence, n_resamples, seed)
    res["p_t_adj"] = correct(res["p_t"], correction)
    res["p_perm_adj"] = correct(res["p_perm"], correction)
    res["family_size"] = int(res["p_perm"].notna().sum())
    res["reference"] = ref_name
    res = res.drop(columns=["sx", "sy"])
    if skip_missing:
        res.attrs["skipped"] = skipped
    return res
