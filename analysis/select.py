"""Epoch selection: one value per trial x task x metric.

``epoch="best-val"`` picks, per trial, the epoch with the best validation
Delta-m against a fixed reference -- the baseline's mean validation metrics
at its last epoch, per dataset -- and reports that epoch's values on
``split``. The test split never influences the choice. ``"last"`` takes each
trial's last epoch; an integer takes that epoch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .delta_m import metric_weights
from .errors import AnalysisError
from .naming import has_baseline, method_of, resolve_baseline
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


# --- the same selection in columns, on the store (DuckDB) -----------------------------------------------------
VARIANT_SQL = "CASE WHEN distribution IS NULL THEN method ELSE method || ':' || distribution END"
STAGE_PREFERENCE = ("final", "single", "tune")


@dataclass
class StoreSelection:
    """What the analysis needs from a store, read in columns: the selected rows (as :func:`select`), one row
    per trial (``index``: study, stage, trial_id, dataset, arch, variant, seed, status), optional validation
    curves (mean and std over trials of the validation Delta-m per dataset x variant x epoch), notes."""

    selected: pd.DataFrame
    index: pd.DataFrame
    curves: pd.DataFrame | None
    notes: list[str]
    stage: str
    epoch: str | int


#: per usable trial, its epoch with the highest complete validation Delta-m among the candidates (``where``), ties
#: to the earliest epoch
BEST_SQL = """
    WITH {cand} sc AS (SELECT s.trial_id, s.epoch, s.val_delta_m FROM scores s JOIN usable u USING (trial_id) {join}
                       WHERE s.val_delta_m IS NOT NULL AND NOT isnan(s.val_delta_m) {where}),
         top AS (SELECT trial_id, max(val_delta_m) AS best FROM sc GROUP BY trial_id)
    SELECT trial_id, min(epoch) AS epoch FROM sc JOIN top USING (trial_id)
    WHERE val_delta_m = top.best GROUP BY trial_id"""


def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _selected_rows(con, best: pd.DataFrame, stage: str, split: str) -> pd.DataFrame:
    """The split's rows of each trial in ``best`` (trial_id, epoch, variant) at its epoch."""
    con.register("best", best.astype({"epoch": "int64"}))
    return _q(con, f"""SELECT m.study, m.stage, trial_id, m.dataset, m.arch, m.method, m.distribution,
                              b.variant, m.seed, m.task, m.metric, m.higher_is_better, m.value, m.epoch
                       FROM m JOIN best b USING (trial_id)
                       WHERE m.stage = '{stage}' AND m.metric <> 'loss' AND split = $split AND m.epoch = b.epoch""",
              split=split)


def _q(con, sql: str, **params) -> pd.DataFrame:
    import duckdb

    try:
        return con.execute(sql, params or None).df()
    except duckdb.Error as err:
        raise AnalysisError(f"cannot read the store: {str(err).splitlines()[0]}") from err


def _pick_stage(stages: list[str], notes: list[str]) -> str:
    if len(stages) == 1:
        if stages == ["tune"]:
            notes.append("only tuning-stage trials: their seeds took part in tuning, so results are biased upward")
        return stages[0]
    for s in STAGE_PREFERENCE:
        if s in stages:
            notes.append(f"stages {', '.join(sorted(stages))} present: analysing stage {s!r} only")
            return s
    raise AnalysisError(f"unknown stages {sorted(stages)}")


def store_studies(store: str | Path, study: str | None = None) -> dict[str, bool]:
    """study -> whether it has validation rows (one scan of two columns)."""
    from .store import connect_metrics

    con, _ = connect_metrics(store, study=study)
    found = _q(con, "SELECT study, bool_or(split = 'val') AS has_val FROM m GROUP BY study ORDER BY study")
    con.close()
    if found.empty:
        raise AnalysisError("no metric rows to summarise")
    return dict(zip(found["study"], found["has_val"].astype(bool)))


def store_selection(store: str | Path, study: str | None = None, dataset: str | None = None, split: str = "test",
                    epoch: str | int = "best-val", baseline: str = "ew", per: str = "task",
                    curves: bool = False, trials: pd.DataFrame | None = None,
                    memory_limit: str = "2GB") -> StoreSelection:
    """:func:`select` on a store without loading it (see :func:`_store_selection`); read again if a file
    vanished meanwhile (a running driver or a compaction replaced it)."""
    from .store import RETRIES

    for attempt in range(RETRIES):
        try:
            return _store_selection(store, study, dataset, split, epoch, baseline, per, curves, trials, memory_limit)
        except AnalysisError as err:
            if attempt == RETRIES - 1 or not any(w in str(err) for w in ("No such file", "No files found", "vanished")):
                raise
    raise AssertionError("unreachable")


def _store_selection(store: str | Path, study: str | None, dataset: str | None, split: str,
                     epoch: str | int, baseline: str, per: str, curves: bool, trials: pd.DataFrame | None,
                     memory_limit: str) -> StoreSelection:
    """:func:`select` on a store without loading it: DuckDB scans only the needed columns and rows
    (study / stage / split filters pushed into the Parquet scan), aggregates the validation Delta-m per
    trial x epoch, picks each trial's epoch, and hands pandas the selected rows only. Memory does not grow
    with epochs x splits. Same result as ``select(load(store), ...)`` (tests/test_store_scale.py)."""
    from .store import connect_metrics, load_trials

    notes: list[str] = []
    con, src = connect_metrics(store, study=study, dataset=dataset, memory_limit=memory_limit, materialize=True)
    if src.shadowed:
        notes.append(f"{len(src.shadowed)} trial(s) have both a compacted and a per-trial copy: read once, from the "
                     "per-trial copy (`litmus compact` merges them)")
    # one scan, two groupings: per trial, where it belongs and which epochs it has on val / on the split; per
    # stage x dataset x task x metric, the metric's directions (checked and weighted below, as select() does)
    both = _q(con, f"""
        SELECT GROUPING(trial_id) AS per_metric, trial_id,
               any_value(study) AS study, any_value(stage) AS stage_, any_value(dataset) AS dataset_,
               any_value(arch) AS arch, any_value({VARIANT_SQL}) AS variant, any_value(seed) AS seed,
               max(epoch) FILTER (WHERE split = 'val' AND metric <> 'loss') AS last_val,
               max(epoch) FILTER (WHERE split = $split AND metric <> 'loss') AS last_split,
               min(epoch) FILTER (WHERE split = $split AND metric <> 'loss') AS first_split,
               stage, dataset, task, metric,
               bool_or(higher_is_better) AS any_true, bool_and(higher_is_better) AS all_true,
               count(*) FILTER (WHERE higher_is_better IS NULL) AS nulls, bool_or(split = 'val') AS in_val
        FROM m GROUP BY GROUPING SETS ((trial_id), (stage, dataset, task, metric))""", split=split)
    index = both.loc[both["per_metric"] == 0, ["trial_id", "study", "stage_", "dataset_", "arch", "variant", "seed",
                                                "last_val", "first_split", "last_split"]].rename(
        columns={"stage_": "stage", "dataset_": "dataset"}).reset_index(drop=True)
    if index.empty:
        raise AnalysisError(f"no metric rows in {store}" + (f" for study {study!r}" if study else ""))
    studies = sorted(index["study"].unique())
    if len(studies) > 1:
        raise AnalysisError(f"the data hold several studies ({', '.join(studies)}): choose one (--study)")
    stage = _pick_stage(sorted(index["stage"].unique()), notes)
    index = index[index["stage"] == stage].reset_index(drop=True)
    if trials is None:
        trials = load_trials(store, study=studies[0], stage=stage)
    status = dict(zip(trials["trial_id"], trials["status"]))
    index["status"] = [str(status.get(t, "unknown")) for t in index["trial_id"]]
    usable_ids = index[index["status"].isin(USABLE_STATUS)]
    con.register("usable", usable_ids[["trial_id", "dataset", "variant", "last_val", "first_split", "last_split"]])
    dirs = both[(both["per_metric"] == 1) & (both["stage"] == stage) & (both["metric"] != "loss")]
    # count(DISTINCT higher_is_better): 2 when both values occur, 0 when there are only nulls
    dirs = dirs.assign(n=[0 if pd.isna(a) else 2 if (a and not b) else 1
                          for a, b in zip(dirs["any_true"], dirs["all_true"])], higher_is_better=dirs["any_true"])
    dirs = dirs[["dataset", "task", "metric", "n", "nulls", "higher_is_better", "in_val"]].reset_index(drop=True)
    bad = dirs[dirs["nulls"] > 0]
    if len(bad):
        raise AnalysisError("metric without direction (null higher_is_better): "
                            + ", ".join("/".join(map(str, r)) for r in bad[["dataset", "task", "metric"]].head(3).itertuples(index=False)))
    bad = dirs[dirs["n"] > 1]
    if len(bad):
        raise AnalysisError("metric with conflicting higher_is_better across rows: "
                            + ", ".join("/".join(map(str, r)) for r in bad[["dataset", "task", "metric"]].head(3).itertuples(index=False)))
    if usable_ids["last_split"].isna().all():
        raise AnalysisError(f"no usable rows on split {split!r}")
    scores = None
    if epoch == "best-val":
        no_val = sorted(set(usable_ids["dataset"]) - set(usable_ids.loc[usable_ids["last_val"].notna(), "dataset"]))
        if usable_ids["last_val"].isna().all():
            raise AnalysisError("best-val selection needs a 'val' split and the store has none "
                                "(use epoch='last'; litmus never selects epochs on the test split)")
        if no_val:
            raise AnalysisError(f"best-val selection needs a 'val' split; datasets without one: {', '.join(no_val)}")
        # the fixed reference: the baseline's mean validation metrics at its last epoch, per dataset
        ref_trials = []
        for ds_name, g in usable_ids[usable_ids["last_val"].notna()].groupby("dataset"):
            variants = g["variant"].unique()
            if has_baseline(baseline, variants):
                g = g[g["variant"] == resolve_baseline(baseline, variants)]
            else:
                warnings.warn(f"baseline {baseline!r} absent from dataset {ds_name!r}: best-val selection "
                              "uses the mean of all trials' last validation epoch as reference", stacklevel=2)
            ref_trials.append(g[["trial_id", "last_val"]])
        ref_trials = pd.concat(ref_trials, ignore_index=True)
        con.register("ref_trials", ref_trials)
        # a trial's rows share its method: filtering on the reference trials' methods first (a cheap comparison
        # in the scan) leaves the join with the trial list a twentieth of the validation rows
        methods = ", ".join(_sql_str(method_of(v)) for v in
                            sorted(set(usable_ids.set_index("trial_id").loc[ref_trials["trial_id"], "variant"])))
        ref = _q(con, f"""SELECT m.dataset, task, metric, avg(value) AS ref FROM m JOIN ref_trials r USING (trial_id)
                          WHERE m.stage = '{stage}' AND split = 'val' AND metric <> 'loss' AND m.method IN ({methods})
                          AND epoch = r.last_val GROUP BY ALL""")
        w = metric_weights(dirs[dirs["in_val"]], per)
        coef = ref.merge(w, on=["dataset", "task", "metric"])
        coef["coef"] = coef["w"] / coef["ref"]
        coef = coef[["dataset", "task", "metric", "ref", "coef"]]
        need = coef.groupby("dataset").size().rename("need").reset_index()
        con.register("coef", coef)
        con.register("need", need)
        # validation Delta-m per trial x epoch (complete epochs only), on epochs that have the split
        con.execute(f"""CREATE TEMP TABLE scores AS
            WITH terms AS (
                SELECT trial_id, m.epoch, c.coef * (value - c.ref) AS term
                FROM m JOIN coef c ON m.dataset = c.dataset AND m.task = c.task AND m.metric = c.metric
                WHERE m.stage = '{stage}' AND m.metric <> 'loss' AND split = 'val'),
            s AS (SELECT trial_id, epoch,
                         sum(term) FILTER (WHERE NOT isnan(term)) AS s, count(term) FILTER (WHERE NOT isnan(term)) AS c
                  FROM terms GROUP BY trial_id, epoch)
            SELECT s.trial_id, s.epoch, u.dataset, u.variant,
                   CASE WHEN s.c = n.need THEN s.s ELSE NULL END AS val_delta_m
            FROM s JOIN usable u USING (trial_id) JOIN need n ON n.dataset = u.dataset""")
        # candidates: complete validation epochs within the trial's first..last epoch on the split (taken from the
        # index scan instead of a pass over the split's rows); an epoch in that range without split rows shows up
        # as a trial without selected rows below, and such trials are picked again among their exact candidates
        best = _q(con, BEST_SQL.format(cand="", join="", where="AND s.epoch BETWEEN u.first_split AND u.last_split"))
        if curves:
            scores = _q(con, """SELECT dataset, variant, epoch, avg(val_delta_m) AS mean, stddev_samp(val_delta_m) AS std,
                                       count(val_delta_m) AS n
                                FROM scores GROUP BY ALL ORDER BY dataset, variant, epoch""")
    elif epoch == "last":
        best = usable_ids.loc[usable_ids["last_split"].notna(), ["trial_id", "last_split"]].rename(
            columns={"last_split": "epoch"})
    elif isinstance(epoch, (int, np.integer)):
        best = usable_ids.loc[usable_ids["last_split"].notna(), ["trial_id"]].assign(epoch=int(epoch))
    else:
        raise AnalysisError(f"epoch must be 'best-val', 'last' or an integer, got {epoch!r}")
    best = best.merge(usable_ids[["trial_id", "variant"]], on="trial_id")  # usable trials only
    selected = _selected_rows(con, best, stage, split)
    if epoch == "best-val":
        gap = best[~best["trial_id"].isin(selected["trial_id"])]  # chosen epoch in the range but without split rows
        if len(gap):
            con.register("gap", gap[["trial_id"]])
            exact = f"""cand AS (SELECT DISTINCT trial_id, m.epoch FROM m JOIN gap USING (trial_id)
                                 WHERE m.stage = '{stage}' AND m.metric <> 'loss' AND split = $split),"""
            exact_join = "JOIN cand c ON c.trial_id = s.trial_id AND c.epoch = s.epoch"
            again = _q(con, BEST_SQL.format(cand=exact, join=exact_join, where=""), split=split)
            again = again.merge(usable_ids[["trial_id", "variant"]], on="trial_id")
            best = pd.concat([best[~best["trial_id"].isin(gap["trial_id"])], again], ignore_index=True)
            selected = pd.concat([selected, _selected_rows(con, again, stage, split)], ignore_index=True)
            dist = selected["distribution"].astype(object)  # the two results may spell a null differently
            selected["distribution"] = dist.where(dist.notna(), None)
        lost = usable_ids["last_split"].notna().sum() - len(best)
        if lost:
            warnings.warn(f"{lost} trial(s) have no complete validation epoch and are left out "
                          "of best-val selection", stacklevel=2)
    con.close()
    selected = selected.sort_values(["trial_id", "task", "metric"], kind="stable").reset_index(drop=True)
    selected["seed"] = selected["seed"].astype("int64")
    selected["epoch"] = selected["epoch"].astype("int64")
    index = index.drop(columns=["last_val", "first_split", "last_split"])
    return StoreSelection(selected, index, scores, notes, stage, epoch)
