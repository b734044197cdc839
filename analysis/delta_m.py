"""Delta-m: the mean relative improvement over a baseline (Lin et al., random-weighting paper).

Delta_m% = 100/T * sum_t 1/N_t * sum_i s_ti (M_ti - B_ti) / B_ti, s = +1 where
higher is better else -1, on means over seeds (``per="task"``, the paper's
convention). ``per="metric"`` weights all K metrics equally, 100/K * sum_k
(the Nash-MTL convention). Because Delta-m is linear in M for a fixed B, the
mean over seeds of per-seed Delta-m (each against the baseline's seed mean)
equals the Delta-m of the seed means; the per-seed values carry the seed
noise used for tests and confidence intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .errors import AnalysisError
from .naming import resolve_baseline

CELL = ["dataset", "arch", "variant"]
TM = ["task", "metric"]
PER = ("task", "metric")


def metric_weights(metrics: pd.DataFrame, per: str = "task") -> pd.DataFrame:
    """Per dataset x task x metric: signed weight ``w = 100 * s / (T * N_t)`` (or ``100 * s / K``)."""
    if per not in PER:
        raise AnalysisError(f"per must be one of {PER}, got {per!r}")
    m = metrics[["dataset", "task", "metric", "higher_is_better"]].drop_duplicates(["dataset", "task", "metric"])
    m = m.copy()
    sign = np.where(m["higher_is_better"].to_numpy(bool), 1.0, -1.0)
    if per == "task":
        n_t = m.groupby(["dataset", "task"], observed=True)["metric"].transform("size").to_numpy()
        t = m.groupby("dataset", observed=True)["task"].transform("nunique").to_numpy()
        m["w"] = 100.0 * sign / (t * n_t)
    else:
        k = m.groupby("dataset", observed=True)["metric"].transform("size").to_numpy()
        m["w"] = 100.0 * sign / k
    return m[["dataset", "task", "metric", "w"]].reset_index(drop=True)


def _as_selected(frame: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Accept a raw metrics frame (selects best-val test values) or an already selected one."""
    if "split" in frame.columns:
        from .select import select
        return select(frame, baseline=baseline)
    return frame


def _baseline_map(selected: pd.DataFrame, baseline: str, baseline_arch: str | None) -> dict[tuple, tuple]:
    """(dataset, arch) -> (baseline dataset, arch, variant); raises if any dataset lacks the baseline."""
    out, missing = {}, []
    for dataset, g in selected.groupby("dataset", observed=True):
        variants = g["variant"].astype(str).unique()
        try:
            if baseline_arch is None:
                base_rows = g
            else:
                base_rows = g[g["arch"].astype(str) == baseline_arch]
            variant = resolve_baseline(baseline, base_rows["variant"].astype(str).unique(),
                                       where=f" from dataset {dataset!r}")
        except AnalysisError:
            missing.append(str(dataset))
            continue
        for arch in g["arch"].astype(str).unique():
            if baseline_arch is None:
                has = ((g["arch"].astype(str) == arch) & (g["variant"].astype(str) == variant)).any()
                if not has:
                    missing.append(f"{dataset}/{arch}")
                    continue
            out[(str(dataset), arch)] = (str(dataset), baseline_arch or arch, variant)
        del variants
    if missing:
        raise AnalysisError(f"baseline {baseline!r} is absent from: {', '.join(missing)}")
    return out


def baseline_means(selected: pd.DataFrame, baseline: str, baseline_arch: str | None = None) -> pd.DataFrame:
    """Per dataset x arch x task x metric: the baseline's mean over seeds (``B``) and its variant name."""
    bmap = _baseline_map(selected, baseline, baseline_arch)
    means = (selected.assign(dataset=selected["dataset"].astype(str), arch=selected["arch"].astype(str),
                             variant=selected["variant"].astype(str))
             .groupby(CELL + TM, observed=True)["value"].mean().rename("B").reset_index())
    keys = pd.DataFrame([(d, a, bd, ba, bv) for (d, a), (bd, ba, bv) in bmap.items()],
                        columns=["dataset", "arch", "_bd", "_ba", "baseline"])
    ref = keys.merge(means, left_on=["_bd", "_ba", "baseline"], right_on=CELL, suffixes=("", "_b"))
    ref = ref[["dataset", "arch", "baseline", "task", "metric", "B"]]
    ref = ref.assign(task=ref["task"].astype(str), metric=ref["metric"].astype(str))
    if (ref["B"] == 0).any():
        bad = ref.loc[ref["B"] == 0, ["dataset", "task", "metric"]].head(3).to_numpy().tolist()
        raise AnalysisError(f"baseline mean is 0 for {bad}: Delta-m (a relative change) is undefined")
    return ref


def per_seed(frame: pd.DataFrame, baseline: str = "ew", per: str = "task",
             baseline_arch: str | None = None) -> pd.DataFrame:
    """Per trial: Delta-m (percent) against the baseline's seed means (NaN if a metric is missing)."""
    sel = _as_selected(frame, baseline)
    ref = baseline_means(sel, baseline, baseline_arch)
    w = metric_weights(sel, per)
    w = w.assign(dataset=w["dataset"].astype(str), task=w["task"].astype(str), metric=w["metric"].astype(str))
    keys = ["trial_id", "dataset", "arch", "variant", "method", "distribution", "seed"]
    s = sel[keys + TM + ["value"]].copy()
    for c in ["dataset", "arch", "variant", "task", "metric"]:
        s[c] = s[c].astype(str)
    s = s.merge(ref, on=["dataset", "arch", "task", "metric"], how="left").merge(
        w, on=["dataset", "task", "metric"], how="left")
    s["term"] = s["w"] * (s["value"] - s["B"]) / s["B"]
    k = w.groupby("dataset")["w"].size()
    g = s.groupby(["trial_id"] + keys[1:] + ["baseline"], observed=True, dropna=False)
    out = g["term"].agg(["sum", "count"]).reset_index()
    complete = out["count"].to_numpy() == out["dataset"].map(k).to_numpy()
    out["delta_m"] = np.where(complete, out["sum"], np.nan)
    return out.drop(columns=["sum", "count"]).rename(columns={"count": "n_metrics"})


def _bootstrap_ci(mat_m: np.ndarray, mat_b: np.ndarray, w: np.ndarray, paired: bool,
                  confidence: float, n_resamples: int, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap CI of Delta-m resampling the seeds of method and baseline (scipy.stats.bootstrap)."""
    if len(mat_m) < 2 or len(mat_b) < 2 or not (np.isfinite(mat_m).all() and np.isfinite(mat_b).all()):
        return np.nan, np.nan

    def stat(i, j, axis=-1):
        bm = mat_b[j].mean(axis=-2)
        return ((mat_m[i].mean(axis=-2) - bm) / bm * w).sum(axis=-1)

    res = stats.bootstrap((np.arange(len(mat_m)), np.arange(len(mat_b))), stat, vectorized=True,
                          paired=paired, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", rng=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def delta_m(frame: pd.DataFrame, baseline: str = "ew", per: str = "task", confidence: float = 0.95,
            n_resamples: int = 2000, baseline_arch: str | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per dataset x arch x variant: Delta-m (percent) on seed means, with a bootstrap CI.

    ``frame`` is the output of :func:`analysis.select` (a raw metrics frame is
    selected with best-val first). The CI resamples seeds of the method and of
    the baseline (jointly when they share the same seeds), so it carries the
    seed noise of both. ``baseline_arch`` measures every architecture against
    the baseline on that architecture (Table-4 style).
    """
    sel = _as_selected(frame, baseline)
    if sel.empty:
        raise AnalysisError("no selected values to compute Delta-m on")
    ps = per_seed(sel, baseline, per, baseline_arch)
    ref = baseline_means(sel, baseline, baseline_arch)
    w = metric_weights(sel, per)
    w = w.assign(dataset=w["dataset"].astype(str), task=w["task"].astype(str), metric=w["metric"].astype(str))
    s = sel.assign(**{c: sel[c].astype(str) for c in ["dataset", "arch", "variant", "task", "metric"]})
    wide = s.pivot_table(index=["dataset", "arch", "variant", "seed"], columns=TM, values="value",
                         aggfunc="mean", observed=True)
    rng = np.random.default_rng(seed)
    rows = []
    bkey = ref.drop_duplicates(["dataset", "arch"]).set_index(["dataset", "arch"])["baseline"]
    for (dataset, arch, variant), g in ps.groupby(["dataset", "arch", "variant"], observed=True, sort=True):
        r = ref[(ref["dataset"] == dataset) & (ref["arch"] == arch)]
        cols = pd.MultiIndex.from_arrays([r["task"], r["metric"]])
        wd = w[w["dataset"] == dataset].set_index(TM)["w"].reindex(cols).to_numpy()
        b_variant = bkey[(dataset, arch)]
        b_arch = baseline_arch or arch
        mat_m = wide.loc[(dataset, arch, variant)].reindex(columns=cols)
        mat_b = wide.loc[(dataset, b_arch, b_variant)].reindex(columns=cols)
        paired = mat_m.index.equals(mat_b.index) and len(mat_m) >= 2
        mm = mat_m.to_numpy(float)
        bm = r["B"].to_numpy(float)
        point = float(((np.nanmean(mm, axis=0) - bm) / bm * wd).sum()) if len(mm) else np.nan
        lo, hi = _bootstrap_ci(mm, mat_b.to_numpy(float), wd, paired, confidence, n_resamples, rng)
        d = g["delta_m"].to_numpy(float)
        rows.append({"dataset": dataset, "arch": arch, "variant": variant,
                     "method": str(g["method"].iloc[0]), "distribution": g["distribution"].iloc[0],
                     "baseline": b_variant, "delta_m": point, "ci_low": lo, "ci_high": hi,
                     "sd": float(np.std(d[np.isfinite(d)], ddof=1)) if np.isfinite(d).sum() > 1 else np.nan,
                     "n_seeds": int(np.isfinite(d).sum()), "n_incomplete": int((~np.isfinite(d)).sum())})
    return pd.DataFrame(rows)

