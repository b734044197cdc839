"""The columnar best-val selection (analysis.select.store_selection) equals the in-memory one
(``select(load(store))``) on a store built to hit every rule of docs/statistics.md: ties (earliest epoch), NaN
and missing validation values (incomplete epochs never picked), epochs without test rows inside a trial's
test range (the candidate range is checked against the rows found), test rows starting late, failed and
diverged trials, a trial with no complete validation epoch, a trial with validation rows only, and a store that
mixes compacted files, per-trial files and a trial held in both (read once, from its per-trial copy)."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis import load, select
from analysis.select import store_selection
from analysis.store import load_trials, plain_strings
from study.compact import compact
from study.store import Store

METRICS = [("seg", "miou", True), ("seg", "acc", True), ("depth", "err", False)]
VARIANTS = ["ew", "rlw:normal", "uw"]
EPOCHS = 6
GROUP = ("study", "stage", "trial_id", "dataset", "arch", "method", "distribution", "seed")


def _tid(*parts: object) -> str:
    return "f" + hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:15]


def _trials() -> pd.DataFrame:
    out = []
    for ds in ("a", "b"):
        for v in VARIANTS:
            for seed in range(4):
                m, _, d = v.partition(":")
                out.append({"study": "s", "stage": "final", "trial_id": _tid(ds, v, seed), "dataset": ds,
                            "arch": "hps", "method": m, "distribution": d or None, "seed": seed,
                            "status": "completed", "epochs": EPOCHS, "config": "{}"})
    return pd.DataFrame(out)


def _rows(trials: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for t in trials.itertuples(index=False):
        for e in range(1, EPOCHS + 1):
            for task, metric, hib in METRICS:
                base = rng.uniform(0.2, 0.8)
                for split in ("val", "test"):
                    rows.append({**{k: getattr(t, k) for k in GROUP}, "split": split, "epoch": e, "task": task,
                                 "metric": metric, "value": base + (rng.normal(0, 0.05) if split == "test" else 0.0),
                                 "higher_is_better": hib})
    return pd.DataFrame(rows)


def _set_val(f: pd.DataFrame, tid: str, epoch: int, values: list[float]) -> None:
    for (task, metric, _), v in zip(METRICS, values):
        at = (f["trial_id"] == tid) & (f["epoch"] == epoch) & (f["split"] == "val") & (f["metric"] == metric)
        f.loc[at, "value"] = v


def _frame() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    trials = _trials()
    f = _rows(trials, np.random.default_rng(7))
    tid = _tid
    named = {"tie": tid("a", "uw", 0), "nan": tid("a", "uw", 1), "gap": tid("a", "uw", 2),
             "late": tid("a", "rlw:normal", 0), "missing": tid("b", "uw", 0), "failed": tid("b", "uw", 1),
             "diverged": tid("b", "uw", 2), "no_val": tid("b", "rlw:normal", 1), "val_only": tid("b", "rlw:normal", 2),
             "shadowed": tid("a", "ew", 3), "per_trial": tid("b", "uw", 3)}
    best = [0.95, 0.95, 0.05]
    # a tie at the best: epochs 2 and 5 hold the same validation values -> epoch 2
    _set_val(f, named["tie"], 2, best)
    _set_val(f, named["tie"], 5, best)
    # the best epoch has a NaN metric (incomplete): the second best (4) wins
    _set_val(f, named["nan"], 3, [0.99, np.nan, 0.01])
    _set_val(f, named["nan"], 4, best)
    # the best validation epoch (3) has no test rows although 1..6 do: the next best (5) wins
    _set_val(f, named["gap"], 3, [0.99, 0.99, 0.01])
    _set_val(f, named["gap"], 5, best)
    f = f[~((f["trial_id"] == named["gap"]) & (f["split"] == "test") & (f["epoch"] == 3))]
    # test rows only from epoch 4 on; validation best at 2 (not a candidate), then 6
    _set_val(f, named["late"], 2, [0.99, 0.99, 0.01])
    _set_val(f, named["late"], 6, best)
    f = f[~((f["trial_id"] == named["late"]) & (f["split"] == "test") & (f["epoch"] < 4))]
    # a validation row missing at the best epoch (incomplete): epoch 1 wins
    f = f[~((f["trial_id"] == named["missing"]) & (f["split"] == "val") & (f["epoch"] == 6) & (f["metric"] == "err"))]
    _set_val(f, named["missing"], 6, [0.99, 0.99, np.nan])
    _set_val(f, named["missing"], 1, best)
    # no complete validation epoch at all: left out of best-val selection, with a warning
    f.loc[(f["trial_id"] == named["no_val"]) & (f["split"] == "val") & (f["metric"] == "acc"), "value"] = np.nan
    # validation rows only: not on the test split at all
    f = f[~((f["trial_id"] == named["val_only"]) & (f["split"] == "test"))]
    # a diverged trial stops early with NaN values
    f = f[~((f["trial_id"] == named["diverged"]) & (f["epoch"] > 3))]
    f.loc[(f["trial_id"] == named["diverged"]) & (f["epoch"] == 3), "value"] = np.nan
    trials.loc[trials["trial_id"] == named["failed"], "status"] = "failed"
    trials.loc[trials["trial_id"] == named["diverged"], "status"] = "diverged"
    return f.reset_index(drop=True), trials, named


def _write(store: Store, f: pd.DataFrame, trials: pd.DataFrame, ids: list[str]) -> None:
    for rec in trials[trials["trial_id"].isin(ids)].to_dict("records"):
        rec = {k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()}
        rows = f[f["trial_id"] == rec["trial_id"]]
        grp = {k: rec[k] for k in GROUP}
        for _, g in rows.groupby("epoch"):
            store.write_metrics(grp, g[["split", "epoch", "task", "metric", "value", "higher_is_better"]]
                                .to_dict("records"))
        store.write_trial(rec)


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory):
    """Half the trials compacted, the other half in per-trial files, one trial in both (rewritten after
    compaction with other values: the per-trial copy is the one read)."""
    f, trials, named = _frame()
    store = Store(tmp_path_factory.mktemp("sel") / "store")
    first = [t for i, t in enumerate(trials["trial_id"]) if i % 2 == 0 or t == named["shadowed"]]
    first = [t for t in first if t != named["per_trial"]]
    _write(store, f, trials, first)
    compact(store)
    newer = f["trial_id"] == named["shadowed"]
    f.loc[newer & (f["split"] == "val") & (f["epoch"] == 1), "value"] += 0.5  # its per-trial copy differs
    rest = [t for t in trials["trial_id"] if t not in first] + [named["shadowed"]]
    _write(store, f, trials, rest)
    assert list((store.root / "metrics").glob("*")) and (store.root / "compacted" / "manifest.json").exists()
    return store.root, f, named


def _norm(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["study", "stage", "trial_id", "dataset", "arch", "method", "distribution", "variant", "seed", "task",
            "metric", "higher_is_better", "value", "epoch"]
    out = plain_strings(frame)[cols].sort_values(["trial_id", "task", "metric"]).reset_index(drop=True)
    out = out.astype({"seed": "int64", "epoch": "int64", "higher_is_better": bool, "value": float,
                      "distribution": object})
    out["distribution"] = out["distribution"].where(out["distribution"].notna(), None)  # one spelling of null
    return out


@pytest.mark.parametrize("epoch", ["best-val", "last", 4])
def test_columnar_selection_equals_the_in_memory_one_on_a_mixed_store(mixed_store, epoch):
    root, f, named = mixed_store
    with warnings.catch_warnings(record=True) as mem_w:
        warnings.simplefilter("always")
        expected = _norm(select(load(root), epoch=epoch))
    with warnings.catch_warnings(record=True) as got_w:
        warnings.simplefilter("always")
        got = store_selection(root, epoch=epoch, trials=load_trials(root))
    pd.testing.assert_frame_equal(expected, _norm(got.selected), check_dtype=False)
    assert [str(w.message) for w in got_w] == [str(w.message) for w in mem_w]
    assert any("both a compacted and a per-trial copy" in n for n in got.notes)
    picked = dict(zip(got.selected["trial_id"], got.selected["epoch"]))
    assert named["failed"] not in picked and named["diverged"] not in picked and named["val_only"] not in picked
    if epoch == "best-val":
        # worked out by hand from the values planted in _frame
        assert (picked[named["tie"]], picked[named["nan"]], picked[named["gap"]], picked[named["late"]],
                picked[named["missing"]]) == (2, 4, 5, 6, 1)
        assert named["no_val"] not in picked
        assert [str(w.message) for w in got_w] == ["1 trial(s) have no complete validation epoch and are left out "
                                                   "of best-val selection"]
    idx = got.index.set_index("trial_id")["status"]
    assert (idx[named["failed"]], idx[named["diverged"]]) == ("failed", "diverged")
    assert len(idx) == 24 and idx.index.is_unique


def test_the_curves_count_every_complete_validation_epoch(mixed_store):
    root, f, named = mixed_store
    got = store_selection(root, curves=True, trials=load_trials(root))
    c = got.curves
    # complete validation epochs of usable trials: 22 usable trials x 6 epochs, minus the incomplete ones
    # (nan: 1, missing: 1, no_val: 6)
    assert int(c["n"].sum()) == 22 * EPOCHS - 1 - 1 - EPOCHS
    assert set(c["variant"]) == set(VARIANTS)
