"""Epoch selection: one value per trial x task x metric.

``epoch="best-val"`` picks, per trial, the epoch with the best validation
Delta-m against a fixed reference -- the baseline's mean validation metrics
at its last epoch, per dataset -- and reports that epoch's values on
``split``. The test split never influences the choice. ``"last"`` takes each
trial's last epoch; an integer takes that epoch.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .delta_m import metric_weights
from .errors import AnalysisError
from .naming import has_baseline, resolve_baseline
from .store import USABLE_STATUS, names, plain_strings

KEEP = ["study", "stage", "trial_id", "dataset", "arch", "method", "distribution", "variant",
        "seed", "task", "metric", "higher_is_better", "value", "epoch"]


def usable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of trials whose status is completed (or unknown when the store has no trials table)."""
    if "status" not in frame.columns:
        return frame
    return frame[frame["status"].isin(USABLE_STATUS)]


def _last_epoch_rows(rows: pd.DataFrame) -> pd.DataFrame:
    last = rows.groupby("trial_id", observed=True)["epoch"].transform("max")
    return rows[rows["epoch"].to_numpy() == last.to_numpy()]


def validation_reference(val: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per dataset x task x metric: the baseline's mean validation value at its last epoch.

    If a dataset has no baseline trial, the mean over all its trials' last
    epochs is the (still fixed) reference, with a warning.
    """
    last = _last_epoch_rows(val)
    refs = []
    for dataset, g in last.groupby("dataset", observed=True):
        variants = g["variant"].astype(str).unique()
        if has_baseline(baseline, variants):
            g = g[g["variant"].astype(str) == resolve_baseline(baseline, variants)]
        else:
            warnings.warn(f"baseline {baseline!r} absent from dataset {dataset!r}: best-val selection "
                          "uses the mean of all trials' last validation epoch as reference", stacklevel=3)
        refs.append(g.groupby(["dataset", "task", "metric"], observed=True)["value"].mean()
                    .rename("ref").reset_index())
    return pd.concat(refs, ignore_index=True)


def validation_scores(frame: pd.DataFrame, baseline: str = "ew", per: str = "task") -> pd.DataFrame:
    """Validation Delta-m of every (usable) trial x epoch against the fixed reference.

    Columns trial_id, dataset, variant, seed, epoch, val_delta_m (NaN when a metric is missing).
    """
    val = usable(frame)
    val = val[val["split"] == "val"]
    if val.empty:
        raise AnalysisError("best-val selection needs a 'val' split and the store has none "
                            "(use epoch='last'; litmus never selects epochs on the test split)")
    no_val = sorted(set(names(usable(frame)["dataset"])) - set(names(val["dataset"])))
    if no_val:
        raise AnalysisError(f"best-val selection needs a 'val' split; datasets without one: {', '.join(no_val)}")
    ref = validation_reference(val, baseline)
    w = metric_weights(val, per)
    ref = ref.merge(w, on=["dataset", "task", "metric"])
    ref["coef"] = ref["w"] / ref["ref"]
    v = val[["trial_id", "dataset", "epoch", "task", "metric", "value"]].merge(
        ref[["dataset", "task", "metric", "ref", "coef"]], on=["dataset", "task", "metric"], how="inner")
    v["term"] = v["coef"] * (v["value"] - v["ref"])
    score = v.groupby(["trial_id", "epoch"], observed=True)["term"].agg(["sum", "count"]).reset_index()
    k = ref.groupby("dataset", observed=True).size()
    info = val.drop_duplicates("trial_id").set_index("trial_id")[["dataset", "variant", "seed"]]
    score = score.join(info, on="trial_id")
    need = score["dataset"].map(k).to_numpy(float)
    score["val_delta_m"] = np.where(score["count"].to_numpy() == need, score["sum"], np.nan)
    return score[["trial_id", "dataset", "variant", "seed", "epoch", "val_delta_m"]]


def best_val_epochs(frame: pd.DataFrame, baseline: str = "ew", per: str = "task",
                    candidates: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per trial: the epoch with the best validation Delta-m (columns trial_id, epoch, val_delta_m);
    ties go to the earliest epoch. ``candidates`` (trial_id, epoch) restricts the epochs considered."""
    score = validation_scores(frame, baseline, per)
    if candidates is not None:
        score = score.merge(candidates, on=["trial_id", "epoch"], how="inner")
    score = score.dropna(subset=["val_delta_m"]).sort_values(["trial_id", "epoch"])
    best = score.loc[score.groupby("trial_id", observed=True)["val_delta_m"].idxmax()]
    return best[["trial_id", "epoch", "val_delta_m"]].reset_index(drop=True)


def select(frame: pd.DataFrame, split: str = "test", epoch: str | int = "best-val",
           baseline: str = "ew", per: str = "task") -> pd.DataFrame:
    """One value per (usable) trial x task x metric on ``split`` at the selected epoch.

    ``epoch``: ``"best-val"`` (default), ``"last"`` or an epoch number.
    ``baseline`` names the variant whose validation means form the fixed
    best-val reference. Trials that are not completed are left out here and
    counted by :func:`analysis.counts.cell_counts`.
    """
    data = usable(frame)
    rows = data[data["split"] == split]
    if rows.empty:
        splits = names(frame["split"])
        raise AnalysisError(f"no usable rows on split {split!r} (splits present: {', '.join(splits)})")
    if epoch == "last":
        chosen = _last_epoch_rows(rows)
    elif epoch == "best-val":
        cand = rows[["trial_id", "epoch"]].drop_duplicates()
        best = best_val_epochs(data, baseline, per, candidates=cand)
        chosen = rows.merge(best[["trial_id", "epoch"]], on=["trial_id", "epoch"], how="inner")
        lost = set(names(rows["trial_id"])) - set(names(best["trial_id"]))
        if lost:
            warnings.warn(f"{len(lost)} trial(s) have no complete validation epoch and are left out "
                          "of best-val selection", stacklevel=2)
    elif isinstance(epoch, (int, np.integer)):
        chosen = rows[rows["epoch"] == int(epoch)]
    else:
        raise AnalysisError(f"epoch must be 'best-val', 'last' or an integer, got {epoch!r}")
    cols = [c for c in KEEP if c in chosen.columns]
    return plain_strings(chosen[cols].reset_index(drop=True))
