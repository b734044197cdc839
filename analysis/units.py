"""The units of a comparison, fixed by the design: every trial that ran, whatever became of it.

A unit is one trial of a dataset x arch x variant: a seed, or a tuning
replicate x seed when the trials table has a ``replicate`` column (the tuning
replicate whose winner ran; null or absent = one replicate). Which units pair
up is decided by the seeds of the design, not by which trials survived:

* ``completed`` (or ``unknown``, a store without trials table) with a finite
  value: its value;
* ``failed``, ``diverged``, or completed with a missing / non-finite value:
  the **worst** value of its comparison group (the same dataset x arch x task x
  metric, all variants and seeds): worst-rank scoring (Lachin, "Worst-rank
  score analysis with informatively missing observations in clinical trials",
  Controlled Clinical Trials 1999), so that blowing up can never make a
  method look better than having finished;
* ``running`` or any other state: not a result yet; left out of both sides
  of its comparisons (counted as unmatched).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .store import names

SCORED = ("completed", "unknown", "failed", "diverged")
IMPUTED = ("failed", "diverged")
UNIT_COLS = ["trial_id", "dataset", "arch", "variant", "seed", "replicate", "status"]


def replicate_of(trials: pd.DataFrame | None) -> dict[str, int]:
    """trial_id -> tuning replicate (0 when the column is absent or null)."""
    if trials is None or not len(trials) or "replicate" not in trials.columns:
        return {}
    r = pd.to_numeric(trials["replicate"], errors="coerce").fillna(0).astype(int)
    return dict(zip(trials["trial_id"].astype(str), r))


def design_units(frame: pd.DataFrame, trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trial of the design: ``trial_id, dataset, arch, variant, seed, replicate, status``.

    ``frame``: a raw metrics frame (with ``status``) or selected values (all completed); ``trials`` (the
    trials table) adds trials that never wrote a metric row and the ``replicate`` column. Only trials of
    the frame's studies, stages and datasets are taken from ``trials``.
    """
    base = frame.drop_duplicates("trial_id")
    u = pd.DataFrame({
        "trial_id": base["trial_id"].astype(str).to_numpy(), "dataset": base["dataset"].astype(str).to_numpy(),
        "arch": base["arch"].astype(str).to_numpy(), "variant": base["variant"].astype(str).to_numpy(),
        "seed": base["seed"].to_numpy(),
        "status": (base["status"].astype(str).to_numpy() if "status" in base.columns else "completed"),
    })
    if trials is not None and len(trials):
        t = trials
        for col in ("study", "stage"):
            if col in frame.columns and col in t.columns:
                t = t[t[col].astype(str).isin(names(frame[col]))]
        t = t[t["dataset"].astype(str).isin(u["dataset"].unique())]
        t = t[~t["trial_id"].astype(str).isin(u["trial_id"])]
        if len(t):
            extra = pd.DataFrame({c: t[c].astype(str).to_numpy() for c in ["trial_id", "dataset", "arch", "variant",
                                                                           "status"]})
            extra["seed"] = t["seed"].to_numpy()
            u = pd.concat([u, extra], ignore_index=True)
        status = dict(zip(trials["trial_id"].astype(str), trials["status"].astype(str)))
        u["status"] = [status.get(i, s) if s == "unknown" else s for i, s in zip(u["trial_id"], u["status"])]
    reps = replicate_of(trials)
    u["replicate"] = [reps.get(i, 0) for i in u["trial_id"]]
    return u[UNIT_COLS]


def scored_values(values: pd.DataFrame, units: pd.DataFrame) -> pd.DataFrame:
    """Values of every scored unit x (task, metric) of its dataset, worst-filled where missing.

    ``values``: long rows ``trial_id, dataset, arch, variant, seed, task, metric, higher_is_better, value``
    of completed trials. Returns the same columns plus ``replicate``, ``status`` and ``imputed``.
    """
    scored = units[units["status"].isin(SCORED)]
    tm = values[["dataset", "task", "metric", "higher_is_better"]].drop_duplicates(["dataset", "task", "metric"])
    grid = scored.merge(tm, on="dataset", how="inner")
    v = values[["trial_id", "task", "metric", "value"]].drop_duplicates(["trial_id", "task", "metric"])
    out = grid.merge(v, on=["trial_id", "task", "metric"], how="left")
    finite = np.isfinite(out["value"].to_numpy(float))
    signed = np.where(out["higher_is_better"].to_numpy(bool), 1.0, -1.0) * out["value"].to_numpy(float)
    out["_s"] = np.where(finite, signed, np.nan)
    worst = out.groupby(["dataset", "arch", "task", "metric"], observed=True)["_s"].transform("min").to_numpy()
    worst = worst * np.where(out["higher_is_better"].to_numpy(bool), 1.0, -1.0)
    out["imputed"] = ~finite
    out["value"] = np.where(finite, out["value"].to_numpy(float), worst)
    return out.drop(columns="_s")


def unit_counts(units: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x arch x variant: units by status (completed, failed, diverged, other)."""
    s = units["status"].where(units["status"].isin(["completed", "failed", "diverged", "unknown"]), "other")
    s = s.replace({"unknown": "completed"})
    c = pd.crosstab([units["dataset"], units["arch"], units["variant"]], s)
    for col in ("completed", "failed", "diverged", "other"):
        if col not in c.columns:
            c[col] = 0
    return c[["completed", "failed", "diverged", "other"]].reset_index()
