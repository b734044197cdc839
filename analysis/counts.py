"""Per-cell accounting: how many trials each dataset x arch x variant has, by status, and which seeds
are missing. Nothing is dropped silently: every table and report shows these counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import Status
from .store import names

STATUSES = (*(str(s) for s in (Status.COMPLETED, Status.FAILED, Status.DIVERGED, Status.RUNNING)), "unknown")


def cell_counts(frame: pd.DataFrame, trials: pd.DataFrame | None = None,
                selected: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset x arch x variant: trials by status, seeds used, missing seeds, non-finite values.

    ``trials`` (from :func:`analysis.load_trials`) adds failed trials that never
    wrote a metric row. Missing seeds are those run for some variant of the
    dataset but not (usably) for this one.
    """
    keys = ["dataset", "arch", "variant"]
    t = frame[["trial_id", "dataset", "arch", "variant", "seed", "status"]].drop_duplicates("trial_id")
    t = t.astype({"dataset": str, "arch": str, "variant": str, "status": str, "trial_id": str})
    if trials is not None and len(trials):
        extra = trials[~trials["trial_id"].isin(t["trial_id"])]
        if "study" in frame.columns and len(extra):
            extra = extra[extra["study"].isin(names(frame["study"]))
                          & extra["stage"].isin(names(frame["stage"]))
                          & extra["dataset"].isin(t["dataset"].unique())]
        t = pd.concat([t, extra[["trial_id", "dataset", "arch", "variant", "seed", "status"]].astype(
            {"status": str})], ignore_index=True)
    counts = pd.crosstab([t["dataset"], t["arch"], t["variant"]], t["status"])
    for s in STATUSES:
        if s not in counts.columns:
            counts[s] = 0
    out = counts[list(STATUSES) + [c for c in counts.columns if c not in STATUSES]].reset_index()
    out["trials"] = out[[c for c in counts.columns]].sum(axis=1)
    all_seeds = t.groupby("dataset")["seed"].agg(lambda s: set(s.tolist()))
    ok = t[t["status"].isin(["completed", "unknown"])]
    used = ok.groupby(keys)["seed"].agg(lambda s: set(s.tolist()))
    out["seeds"] = [len(used.get(tuple(k), set())) for k in out[keys].itertuples(index=False)]
    out["missing_seeds"] = [
        ",".join(map(str, sorted(all_seeds[k[0]] - used.get(tuple(k), set()))))
        for k in out[keys].itertuples(index=False)]
    if selected is not None and len(selected):
        sel = selected.astype({"dataset": str, "arch": str, "variant": str})
        bad = sel[~np.isfinite(sel["value"].to_numpy(float))]
        nf = bad.groupby(keys)["trial_id"].nunique()
        out["nonfinite_trials"] = [int(nf.get(tuple(k), 0)) for k in out[keys].itertuples(index=False)]
    return out


def count_note(row: pd.Series) -> str:
    """A short note for a table cell, e.g. ``2 failed, 1 diverged, seeds 3,4 missing`` (empty when clean)."""
    parts = [f"{int(row[s])} {s}" for s in ("failed", "diverged", "running") if s in row and row[s]]
    if row.get("nonfinite_trials", 0):
        parts.append(f"{int(row['nonfinite_trials'])} non-finite")
    if row.get("missing_seeds"):
        parts.append(f"seeds {row['missing_seeds']} missing")
    return ", ".join(parts)
