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

from .errors import AnalysisError
from .naming import resolve_baseline

CELL = ["dataset", "arch", "variant"]
TM = ["task", "metric"]
PER = ("task", "metric")


def task_weights(tasks: np.ndarray, higher_is_better: np.ndarray, per: str = "task") -> np.ndarray:
    """Signed metric weights of one dataset: ``100 * s / (T * N_t)`` (``per="task"``) or ``100 * s / K``.

    ``tasks[k]`` names metric k's task, ``s = +1`` where higher is better, else -1.
    """
    if per not in PER:
        raise AnalysisError(f"per must be one of {PER}, got {per!r}")
    tasks = np.asarray(tasks)
    sign = np.where(np.asarray(higher_is_better, bool), 1.0, -1.0)
    if per == "metric":
        return 100.0 * sign / len(tasks)
    names, index, n_t = np.unique(tasks, return_inverse=True, return_counts=True)
    return 100.0 * sign / (len(names) * n_t[index])


def delta_m_terms(values: np.ndarray, baseline: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each metric's share of Delta-m: ``w_k (M_k - B_k) / B_k`` (NaN where ``B_k = 0``: a relative change is
    undefined there, never skipped)."""
    values = np.asarray(values, float)
    baseline = np.asarray(baseline, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(weights, float) * (values - baseline) / baseline
    return np.where(baseline != 0, out, np.nan)


def delta_m_values(values: np.ndarray, baseline: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Delta-m % of ``values`` (shape ``(..., K)``) against ``baseline`` (``K``): the sum of
    :func:`delta_m_terms` over the last axis (Lin et al.; NaN if a metric is missing).

    The one definition of Delta-m in litmus: the analysis and the tuning objective
    (``study/tuning.py``) both compute it here.
    """
    return delta_m_terms(values, baseline, weights).sum(axis=-1)


def metric_weights(metrics: pd.DataFrame, per: str = "task") -> pd.DataFrame:
    """Per dataset x task x metric: signed weight ``w = 100 * s / (T * N_t)`` (or ``100 * s / K``)."""
    if per not in PER:
        raise AnalysisError(f"per must be one of {PER}, got {per!r}")
    m = metrics[["dataset", "task", "metric", "higher_is_better"]].drop_duplicates(["dataset", "task", "metric"])
    m = m.copy()
    m["w"] = np.nan
    for _, g in m.groupby("dataset", observed=True):
        m.loc[g.index, "w"] = task_weights(g["task"].astype(str).to_numpy(), g["higher_is_better"].to_numpy(bool), per)
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
    cells = pd.DataFrame({c: selected[c].astype(str).to_numpy() for c in ["dataset", "arch", "variant"]})
    cells = cells.drop_duplicates()
    for dataset, g in cells.groupby("dataset", sort=True):
        base_rows = g if baseline_arch is None else g[g["arch"] == baseline_arch]
        try:
            variant = resolve_baseline(baseline, base_rows["variant"].unique(), where=f" from dataset {dataset!r}")
        except AnalysisError:
            missing.append(str(dataset))
            continue
        have = set(zip(g["arch"], g["variant"]))
        for arch in g["arch"].unique():
            if baseline_arch is None and (arch, variant) not in have:
                missing.append(f"{dataset}/{arch}")
                continue
            out[(str(dataset), arch)] = (str(dataset), baseline_arch or arch, variant)
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
    s["term"] = delta_m_terms(s["value"].to_numpy(float), s["B"].to_numpy(float), s["w"].to_numpy(float))
    k = w.groupby("dataset")["w"].size()
    g = s.groupby(["trial_id"] + keys[1:] + ["baseline"], observed=True, dropna=False)
    out = g["term"].agg(["sum", "count"]).reset_index()
    complete = out["count"].to_numpy() == out["dataset"].map(k).to_numpy()
    out["delta_m"] = np.where(complete, out["sum"], np.nan)
    return out.drop(columns=["sum", "count"])


def _cell_intervals(ps: pd.DataFrame, confidence: float, baseline_arch: str | None) -> pd.DataFrame:
    """Per dataset x arch x variant: the t interval of Delta-m from per-seed Delta-m (finite values).

    Per-seed Delta-m of a trial is sum_k w_k (M_sk - B_k) / B_k with B the baseline's seed means, so the
    baseline's own per-seed values average to 0 and carry its seed noise: paired (the same seeds, >= 2),
    the one-sample t interval of the differences x_s - y_s; otherwise Welch's interval of mean(x) - mean(y).
    Vectorised per (n, m, paired) shape.
    """
    from .inference import interval, t_summary
    f = ps[np.isfinite(ps["delta_m"].to_numpy(float))].sort_values("seed")
    cells = f.groupby(CELL, observed=True, sort=True).agg(x=("delta_m", list), sx=("seed", list),
                                                            baseline=("baseline", "first")).reset_index()
    b = cells[["dataset", "arch", "variant", "x", "sx"]].rename(
        columns={"arch": "_ba", "variant": "baseline", "x": "y", "sx": "sy"})
    cells["_ba"] = baseline_arch if baseline_arch is not None else cells["arch"]
    c = cells.merge(b, on=["dataset", "_ba", "baseline"], how="left")
    c["y"] = [y if isinstance(y, list) else [] for y in c["y"]]
    c["sy"] = [y if isinstance(y, list) else [] for y in c["sy"]]
    c["n"], c["m"] = c["x"].map(len), c["y"].map(len)
    c["paired"] = [len(a) >= 2 and a == b_ for a, b_ in zip(c["sx"], c["sy"])]
    c["ci_low"], c["ci_high"] = np.nan, np.nan
    for (n, m, paired), idx in c.groupby(["n", "m", "paired"]).groups.items():
        if n < 2 or m < 2:
            continue
        X = np.array(c.loc[idx, "x"].tolist(), float)
        Y = np.array(c.loc[idx, "y"].tolist(), float)
        mean, se, df = t_summary(X, Y, bool(paired))
        lo, hi = interval(mean, se, df, confidence)
        c.loc[idx, "ci_low"], c.loc[idx, "ci_high"] = lo, hi
    return c[CELL + ["ci_low", "ci_high"]]


def delta_m(frame: pd.DataFrame, baseline: str = "ew", per: str = "task", confidence: float = 0.95,
            n_resamples: int = 2000, baseline_arch: str | None = None, seed: int = 0,
            ps: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per dataset x arch x variant: Delta-m (percent) on seed means, with a t confidence interval.

    ``frame`` is the output of :func:`analysis.select` (a raw metrics frame is
    selected with best-val first). The interval is a t interval on per-seed
    Delta-m, paired with the baseline's seeds when both ran the same seeds,
    else Welch's (:func:`_cell_intervals`), so it carries the seed noise of
    both; it reaches its nominal coverage from 3 seeds on (simulations in the
    tests, docs/statistics.md). ``n_resamples`` and ``seed`` are kept for
    compatibility and unused. ``baseline_arch`` measures every architecture
    against the baseline on that architecture (Table-4 style). ``ps``: :func:`per_seed` of the same
    selection when already computed.
    """
    sel = _as_selected(frame, baseline)
    if sel.empty:
        raise AnalysisError("no selected values to compute Delta-m on")
    if ps is None:
        ps = per_seed(sel, baseline, per, baseline_arch)
    ref = baseline_means(sel, baseline, baseline_arch)
    w = metric_weights(sel, per)
    w = w.assign(dataset=w["dataset"].astype(str), task=w["task"].astype(str), metric=w["metric"].astype(str))
    s = sel.assign(**{c: sel[c].astype(str) for c in ["dataset", "arch", "variant", "task", "metric"]})
    means = s.groupby(CELL + TM, observed=True)["value"].mean().rename("M").reset_index()
    means = means.merge(ref, on=["dataset", "arch", "task", "metric"]).merge(w, on=["dataset", "task", "metric"])
    means["term"] = delta_m_terms(means["M"].to_numpy(float), means["B"].to_numpy(float), means["w"].to_numpy(float))
    point = means.groupby(CELL, observed=True)["term"].sum(min_count=1).rename("delta_m").reset_index()
    ok = np.isfinite(ps["delta_m"].to_numpy(float))
    d = ps.assign(_ok=ok, _bad=~ok, _v=np.where(ok, ps["delta_m"].to_numpy(float), np.nan))
    info = d.groupby(CELL, observed=True, sort=True).agg(
        method=("method", "first"), distribution=("distribution", "first"), baseline=("baseline", "first"),
        sd=("_v", "std"), n_seeds=("_ok", "sum"), n_incomplete=("_bad", "sum")).reset_index()
    out = info.merge(point, on=CELL, how="left").merge(_cell_intervals(ps, confidence, baseline_arch), on=CELL,
                                                        how="left")
    out["method"] = out["method"].astype(str)
    out["n_seeds"] = out["n_seeds"].astype(int)
    cols = ["dataset", "arch", "variant", "method", "distribution", "baseline", "delta_m", "ci_low", "ci_high",
            "sd", "n_seeds", "n_incomplete"]
    return out[cols].sort_values(CELL).reset_index(drop=True)
