"""Per-cell accounting: how many trials each dataset x arch x variant has, by status, and which seeds
are missing. Nothing is dropped silently: every table and report shows these counts."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .naming import variant_name
from .schema import Status
from .store import names

STATUSES = (*(str(s) for s in (Status.COMPLETED, Status.FAILED, Status.DIVERGED, Status.RUNNING)), "unknown")


def cell_counts(frame: pd.DataFrame, trials: pd.DataFrame | None = None,
                selected: pd.DataFrame | None = None, planned: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset x arch x variant: trials by status, ``missing`` (planned, not in the store), seeds used,
    missing seeds, non-finite values.

    ``trials`` (from :func:`analysis.load_trials`) adds failed trials that never
    wrote a metric row, also of a dataset none of whose trials did. ``planned``
    (:func:`planned_cells`) adds the cells no trial reached and the ``missing``
    counts. Missing seeds are those run for some variant of the dataset but not
    (usably) for this one.
    """
    keys = ["dataset", "arch", "variant"]
    t = frame[["trial_id", "dataset", "arch", "variant", "seed", "status"]].drop_duplicates("trial_id")
    t = t.astype({"dataset": str, "arch": str, "variant": str, "status": str, "trial_id": str})
    if trials is not None and len(trials):
        extra = trials[~trials["trial_id"].isin(t["trial_id"])]
        if "study" in frame.columns and len(extra) and len(frame):
            # the same study and stage; every dataset, also one whose trials all failed (no metric row at all)
            extra = extra[extra["study"].isin(names(frame["study"])) & extra["stage"].isin(names(frame["stage"]))]
        t = pd.concat([t, extra[["trial_id", "dataset", "arch", "variant", "seed", "status"]].astype(
            {"status": str})], ignore_index=True)
    if len(t):
        counts = pd.crosstab([t["dataset"], t["arch"], t["variant"]], t["status"])
    else:
        counts = pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=keys))
    for s in STATUSES:
        if s not in counts.columns:
            counts[s] = 0
    out = counts[list(STATUSES) + [c for c in counts.columns if c not in STATUSES]].reset_index()
    out["trials"] = out[[c for c in counts.columns]].sum(axis=1)
    if planned is not None and len(planned):
        out = out.merge(planned[keys + ["planned"]], on=keys, how="outer")
        for c in [*counts.columns, "trials"]:
            out[c] = out[c].fillna(0).astype(int)
        out["planned"] = out["planned"].fillna(0).astype(int)
        out["missing"] = (out["planned"] - out["trials"]).clip(lower=0)
        out = out.sort_values(keys, kind="stable").reset_index(drop=True)
    else:
        out["missing"] = 0
    all_seeds = t.groupby("dataset")["seed"].agg(lambda s: set(s.tolist()))
    ok = t[t["status"].isin(["completed", "unknown"])]
    used = ok.groupby(keys)["seed"].agg(lambda s: set(s.tolist()))
    out["seeds"] = [len(used.get(tuple(k), set())) for k in out[keys].itertuples(index=False)]
    out["missing_seeds"] = [
        ",".join(map(str, sorted(all_seeds.get(k[0], set()) - used.get(tuple(k), set()))))
        for k in out[keys].itertuples(index=False)]
    if selected is not None and len(selected):
        sel = selected.astype({"dataset": str, "arch": str, "variant": str})
        bad = sel[~np.isfinite(sel["value"].to_numpy(float))]
        nf = bad.groupby(keys)["trial_id"].nunique()
        out["nonfinite_trials"] = [int(nf.get(tuple(k), 0)) for k in out[keys].itertuples(index=False)]
    return out


def planned_cells(store: str | Path, study: str | None = None) -> pd.DataFrame | None:
    """Final-stage trials planned per dataset x arch x variant, from the study plan the driver saved in the store
    (``studies/<study>.json``: its spec's datasets, architectures, methods x distributions and final seeds);
    ``None`` when the store has no plan (or several studies and none chosen)."""
    root = Path(store)
    files = [root / "studies" / f"{study}.json"] if study else sorted((root / "studies").glob("*.json"))
    files = [f for f in files if f.is_file()]
    if len(files) != 1:
        return None
    try:
        spec = json.loads(files[0].read_text())["spec"]
        rows = [{"dataset": str(ds["name"]), "arch": str(arch), "variant": variant_name(m["name"], dist),
                 "planned": len(spec["final_seeds"])}
                for ds in spec["datasets"] for arch in spec.get("archs", ["hps"])
                for m in spec["methods"] for dist in (m.get("distributions") or [None])]
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(f"study plan {files[0]} is unreadable ({err}): planned trials are not counted", stacklevel=2)
        return None
    return pd.DataFrame(rows, columns=["dataset", "arch", "variant", "planned"])


def count_note(row: pd.Series) -> str:
    """A short note for a table cell, e.g. ``2 failed, 1 diverged, seeds 3,4 missing`` (empty when clean)."""
    parts = [f"{int(row[s])} {s}" for s in ("failed", "diverged", "running", "missing") if s in row and row[s]]
    if row.get("nonfinite_trials", 0):
        parts.append(f"{int(row['nonfinite_trials'])} non-finite")
    if row.get("missing_seeds"):
        parts.append(f"seeds {row['missing_seeds']} missing")
    return ", ".join(parts)


def cells_without_verdict(counts: pd.DataFrame, verdicts: pd.DataFrame | None) -> str:
    """Markdown rows for the cells the verdict table lacks (no completed trial, or no baseline to compare with),
    each with its counts: no cell disappears from the report."""
    have = set() if verdicts is None or not len(verdicts) else \
        set(zip(verdicts["dataset"].astype(str), verdicts["variant"].astype(str)))
    lines = []
    for _, r in counts.iterrows():
        if (str(r["dataset"]), str(r["variant"])) in have:
            continue
        done = int(r.get("completed", 0)) + int(r.get("unknown", 0))
        lost = ", ".join(f"{int(r[k])} {k}" for k in ("failed", "diverged", "running", "missing") if r.get(k, 0))
        what = "no completed trial" if done == 0 else f"{done} completed, no verdict"
        lines.append(f"| {r['dataset']} | {r['variant']} | {what}{f' ({lost})' if lost else ''} |")
    if not lines:
        return ""
    return "\n".join(["| dataset | variant | counts |", "|---|---|---|", *lines]) + "\n"
