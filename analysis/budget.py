"""Budget curves: expected best validation Delta-m after k tuning trials (Dodge et al., "Show Your Work:
Improved Reporting of Experimental Results", EMNLP 2019).

For a method whose N tuning trials scored v_(1) <= ... <= v_(N) (validation
Delta-m against EW's mean last-epoch validation metrics, the best epoch of each
trial), the expected maximum of k draws from those scores is

    E[max_k] = sum_i v_(i) * ((i / N)^k - ((i - 1) / N)^k),  k = 1..N

(draws with replacement from the empirical distribution, as Dodge et al.).
Bands: percentile bootstrap over the N trials. Tuning replicates are pooled.
The curves assume exchangeable trials: exact for the quasi-random start-up
phase shared by all methods (common random numbers), an approximation once a
model-based sampler (TPE) steers later trials. A failed or diverged tuning
trial is scored with the worst score of its dataset's tuning trials, as in the
verdicts. A method that wins at a budget of 3 trials may lose at 30:
:func:`order_changes` says when the order of methods changes with the budget.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CELL = ["dataset", "arch", "variant"]


def expected_max(scores: np.ndarray, ks: np.ndarray | None = None) -> np.ndarray:
    """E[max of k draws with replacement] for k in ``ks`` (default 1..N) from the rows of ``scores``
    [..., N] (vectorised over leading axes; NaN-free)."""
    v = np.sort(np.asarray(scores, float), axis=-1)
    n = v.shape[-1]
    ks = np.arange(1, n + 1) if ks is None else np.asarray(ks)
    i = np.arange(1, n + 1) / n
    w = i[None, :] ** ks[:, None] - (i - 1 / n)[None, :] ** ks[:, None]  # [K, N]
    return v @ w.T  # [..., K]


def budget_curves(scores: pd.DataFrame, n_resamples: int = 1000, confidence: float = 0.9,
                  seed: int = 0) -> pd.DataFrame:
    """Per dataset x arch x variant and k = 1..N: ``expected`` best validation Delta-m after k trials with
    a bootstrap band ``low, high``. ``scores``: one row per tuning trial with columns dataset, arch,
    variant and ``score`` (NaN for failed / diverged: scored the worst of the dataset)."""
    s = scores.copy()
    worst = s.groupby("dataset")["score"].transform("min")
    s["imputed"] = ~np.isfinite(s["score"].to_numpy(float))
    s["score"] = np.where(s["imputed"], worst, s["score"])
    rng = np.random.default_rng(seed)
    a = (1 - confidence) / 2
    rows = []
    for key, g in s.groupby(CELL, observed=True, sort=True):
        v = g["score"].to_numpy(float)
        v = v[np.isfinite(v)]
        n = len(v)
        if n == 0:
            continue
        curve = expected_max(v)
        boot = expected_max(v[rng.integers(0, n, size=(n_resamples, n))])
        lo, hi = np.quantile(boot, [a, 1 - a], axis=0)
        for k in range(n):
            rows.append((*key, k + 1, curve[k], lo[k], hi[k], n, int(g["imputed"].sum())))
    return pd.DataFrame(rows, columns=CELL + ["k", "expected", "low", "high", "n_trials", "n_imputed"])


def order_changes(curves: pd.DataFrame) -> list[str]:
    """Plain sentences naming, per dataset x arch, the budgets at which the best method changes (on the
    budgets every method reached)."""
    out = []
    for (dataset, arch), g in curves.groupby(["dataset", "arch"], sort=True):
        top = g["k"].groupby(g["variant"]).max().min()
        wide = g[g["k"] <= top].pivot_table(index="k", columns="variant", values="expected")
        if wide.shape[1] < 2:
            continue
        leader = wide.idxmax(axis=1)
        changes = leader.ne(leader.shift()) & (leader.index > leader.index.min())
        if changes.any():
            steps = [f"{leader.iloc[0]} at k = {leader.index.min()}"] + [
                f"{leader.loc[k]} from k = {k}" for k in leader.index[changes]]
            out.append(f"{dataset}/{arch}: the best method changes with the tuning budget: " + ", ".join(steps))
    return out


def tuning_scores(frame: pd.DataFrame, trials: pd.DataFrame | None = None, baseline: str = "ew",
                  per: str = "task") -> pd.DataFrame:
    """One score per tuning trial: its best validation Delta-m over epochs against ``baseline``'s mean
    last-epoch validation metrics (:func:`analysis.validation_scores` on the ``tune`` stage), with failed and
    diverged tuning trials of the trials table as NaN. ``frame``: metrics rows (any stages)."""
    from .select import validation_scores
    tune = frame[frame["stage"].astype(str) == "tune"] if "stage" in frame.columns else frame
    if tune.empty:
        return pd.DataFrame(columns=["trial_id"] + CELL + ["score"])
    if "status" in tune.columns:  # running trials are no result yet; failed / diverged stay (as NaN)
        tune = tune[tune["status"].astype(str).isin(["completed", "unknown", "failed", "diverged"])]
    v = validation_scores(tune, baseline, per)
    best = v.groupby("trial_id", observed=True)["val_delta_m"].max().rename("score").reset_index()
    info = tune.drop_duplicates("trial_id")[["trial_id", "dataset", "arch", "variant"]]
    info = info.astype({c: str for c in info.columns})
    out = info.merge(best.astype({"trial_id": str}), on="trial_id", how="left")
    if trials is not None and len(trials):
        t = trials[(trials["stage"].astype(str) == "tune") & trials["status"].astype(str).isin(["failed", "diverged"])]
        t = t[t["dataset"].astype(str).isin(out["dataset"].unique())]
        bad = set(t["trial_id"].astype(str))
        out.loc[out["trial_id"].isin(bad), "score"] = np.nan
        extra = t[~t["trial_id"].astype(str).isin(out["trial_id"])]
        if len(extra):
            out = pd.concat([out, pd.DataFrame({"trial_id": extra["trial_id"].astype(str),
                                                "dataset": extra["dataset"].astype(str),
                                                "arch": extra["arch"].astype(str),
                                                "variant": extra["variant"].astype(str), "score": np.nan})],
                            ignore_index=True)
    return out
