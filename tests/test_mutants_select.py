"""analysis/select.py on a hand-made store whose best validation epoch depends on every part of the rule
(mutation testing, docs/testing.md): the fixed reference (the baseline's last validation epoch), the
direction of each metric, complete epochs only, ties to the earliest epoch, test never used; the in-memory
``select`` and the columnar ``store_selection`` must both give the epochs worked out by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from analysis import AnalysisError, load
from analysis.select import _pick_stage, best_val_epochs, select, store_selection, validation_scores
from analysis.synthetic import write_store

DIRS = {"acc": ("t", True), "err": ("u", False)}


def _trial(rows, tid, variant, seed, vals, dataset="d", stage="final", test_bias=0.0):
    """vals: {epoch: (acc, err)} on val; test = val shifted so that test alone would pick another epoch."""
    method, _, dist = variant.partition(":")
    for epoch, pair in vals.items():
        for metric, v in zip(("acc", "err"), pair):
            if v is None:
                continue
            task, hib = DIRS[metric]
            for split, value in (("val", v), ("test", v + (test_bias * epoch if hib else -test_bias * epoch))):
                rows.append({"study": "s", "stage": stage, "trial_id": tid, "dataset": dataset, "arch": "hps",
                             "method": method, "distribution": dist or None, "seed": seed, "split": split,
                             "epoch": epoch, "task": task, "metric": metric, "value": value,
                             "higher_is_better": hib})


def _rows() -> list[dict]:
    rows: list[dict] = []
    # EW: the reference is its mean at its LAST validation epoch: acc 0.6, err 0.3 (epoch 1 would give 0.3 / 0.6)
    _trial(rows, "ew0", "ew", 0, {1: (0.2, 0.8), 2: (0.5, 0.35), 3: (0.5, 0.2)})
    _trial(rows, "ew1", "ew", 1, {1: (0.4, 0.4), 2: (0.6, 0.25), 3: (0.7, 0.4)})
    # m seed 0, val Delta-m against (0.6, 0.3): e1 = 50*0.1 - 0 = 5; e2 = 0 + 50*0.2 = 10; e3 = 10 - 10 = 0.
    # Dropping the direction of err would pick e3 (20); test (biased upwards by epoch) would pick e3.
    _trial(rows, "m0", "m", 0, {1: (0.66, 0.30), 2: (0.60, 0.24), 3: (0.72, 0.36)}, test_bias=0.1)
    # m seed 1: a tie between e1 and e3 (both 5), e2 lower: the earliest, e1
    _trial(rows, "m1", "m", 1, {1: (0.66, 0.30), 2: (0.60, 0.30), 3: (0.60, 0.27)})
    # m seed 2: e2 is incomplete (no err) but would win on acc: never picked; e3 (2.5) beats e1 (0)
    _trial(rows, "m2", "m", 2, {1: (0.6, 0.3), 2: (0.9, None), 3: (0.63, 0.3)})
    # a failed trial: never selected
    _trial(rows, "m3", "m", 3, {1: (0.9, 0.1), 2: (0.9, 0.1)})
    return rows


EXPECTED = {"ew0": 3, "ew1": 2, "m0": 2, "m1": 1, "m2": 3}  # ew1: e2 8.3, e3 -8.3
STATUS = {"m3": "failed"}


def _frame() -> pd.DataFrame:
    f = pd.DataFrame(_rows())
    f["variant"] = f["method"]
    f["status"] = [STATUS.get(t, "completed") for t in f["trial_id"]]
    return f


def _trials(frame: pd.DataFrame) -> pd.DataFrame:
    t = frame.drop_duplicates("trial_id")[["trial_id", "status"]]
    return t.assign(study="s", stage="final").reset_index(drop=True)


def test_validation_scores_by_hand() -> None:
    s = validation_scores(_frame()).set_index(["trial_id", "epoch"])["val_delta_m"]
    assert s[("m0", 1)] == pytest.approx(5.0) and s[("m0", 2)] == pytest.approx(10.0)
    assert s[("m0", 3)] == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(s[("m2", 2)])
    assert "m3" not in s.index.get_level_values(0)  # not usable
    assert s[("ew0", 1)] == pytest.approx(50 * (0.2 - 0.6) / 0.6 - 50 * (0.8 - 0.3) / 0.3)
    per_metric = validation_scores(_frame(), per="metric").set_index(["trial_id", "epoch"])["val_delta_m"]
    assert per_metric[("m0", 2)] == pytest.approx(10.0)  # one metric per task: the same


def test_best_val_epochs_and_select() -> None:
    best = best_val_epochs(_frame())
    assert dict(zip(best["trial_id"], best["epoch"])) == EXPECTED
    assert best.set_index("trial_id").loc["m0", "val_delta_m"] == pytest.approx(10.0)
    sel = select(_frame())
    assert {t: set(g["epoch"]) for t, g in sel.groupby("trial_id")} == {t: {e} for t, e in EXPECTED.items()}
    m0 = sel[sel["trial_id"] == "m0"].set_index("metric")["value"]
    assert m0["acc"] == pytest.approx(0.6 + 0.2) and m0["err"] == pytest.approx(0.24 - 0.2)  # test values
    assert list(sel.columns) == ["study", "stage", "trial_id", "dataset", "arch", "method", "distribution",
                                 "variant", "seed", "task", "metric", "higher_is_better", "value", "epoch"]
    val = select(_frame(), split="val")
    assert val[val["trial_id"] == "m0"].set_index("metric")["value"]["acc"] == pytest.approx(0.6)


def test_best_val_candidates_restrict_the_epochs() -> None:
    cand = pd.DataFrame({"trial_id": ["m0", "m0"], "epoch": [1, 3]})
    best = best_val_epochs(_frame(), candidates=cand)
    assert dict(zip(best["trial_id"], best["epoch"])) == {"m0": 1}


def test_last_and_fixed_epoch_and_errors() -> None:
    f = _frame()
    last = select(f, epoch="last")
    assert dict(last.groupby("trial_id")["epoch"].first()) == {"ew0": 3, "ew1": 3, "m0": 3, "m1": 3, "m2": 3}
    one = select(f, epoch=2)
    assert set(one["epoch"]) == {2} and len(one[one["trial_id"] == "m2"]) == 1
    assert set(select(f, epoch=np.int64(1))["epoch"]) == {1}
    with pytest.raises(AnalysisError, match="epoch must be 'best-val', 'last' or an integer, got 'first'"):
        select(f, epoch="first")
    with pytest.raises(AnalysisError, match=r"no usable rows on split 'train' \(splits present: test, val\)"):
        select(f, split="train")
    with pytest.raises(AnalysisError, match="best-val selection needs a 'val' split and the store has none"):
        select(f[f["split"] == "test"])
    other = f.assign(dataset="e", trial_id="e" + f["trial_id"])
    with pytest.raises(AnalysisError, match="datasets without one: e"):
        select(pd.concat([f, other[other["split"] == "test"]], ignore_index=True))


def test_a_trial_without_a_complete_validation_epoch_is_left_out_with_a_warning() -> None:
    rows = _rows()
    _trial(rows, "m4", "m", 4, {1: (0.7, None), 2: (0.8, None)})
    f = pd.DataFrame(rows).assign(variant=lambda d: d["method"], status="completed")
    f.loc[f["trial_id"] == "m3", "status"] = "failed"
    with pytest.warns(UserWarning, match="1 trial\\(s\\) have no complete validation epoch"):
        sel = select(f)
    assert "m4" not in set(sel["trial_id"])


def test_without_the_baseline_the_reference_is_every_trials_last_epoch() -> None:
    f = _frame()
    f = f[f["method"] != "ew"]
    with pytest.warns(UserWarning, match="baseline 'ew' absent from dataset 'd'"):
        s = validation_scores(f).set_index(["trial_id", "epoch"])["val_delta_m"]
    # the reference: the mean of m0, m1, m2's last validation epoch (m3 failed): acc 0.65, err 0.31
    ref_acc, ref_err = (0.72 + 0.60 + 0.63) / 3, (0.36 + 0.27 + 0.3) / 3
    assert s[("m0", 2)] == pytest.approx(50 * (0.60 - ref_acc) / ref_acc - 50 * (0.24 - ref_err) / ref_err)


def test_pick_stage() -> None:
    notes: list[str] = []
    assert _pick_stage(["final"], notes) == "final" and notes == []
    assert _pick_stage(["tune"], notes) == "tune" and "biased upward" in notes[0]
    assert _pick_stage(["final", "tune"], notes) == "final"
    assert notes[1] == "stages final, tune present: analysing stage 'final' only"
    assert _pick_stage(["single", "tune"], notes) == "single"
    assert _pick_stage(["tune", "x"], notes) == "tune"
    with pytest.raises(AnalysisError, match=r"unknown stages \['x', 'y'\]"):
        _pick_stage(["x", "y"], [])


# --- the columnar selection on a store ---------------------------------------------------------------------
def _store(tmp_path, frame: pd.DataFrame | None = None):
    f = _frame() if frame is None else frame
    return write_store(tmp_path / "store", f.drop(columns=["variant", "status"]))


@pytest.mark.parametrize("epoch,expected", [("best-val", EXPECTED), ("last", {t: 3 for t in EXPECTED}),
                                            (2, {t: 2 for t in EXPECTED})])
def test_store_selection_picks_the_same_epochs(tmp_path, epoch, expected) -> None:
    f = _frame()
    root = _store(tmp_path)
    got = store_selection(root, epoch=epoch, trials=_trials(f))
    sel = got.selected
    assert {t: set(g["epoch"]) for t, g in sel.groupby("trial_id")} == {t: {e} for t, e in expected.items()}
    assert set(sel["trial_id"]) == set(expected) and got.stage == "final" and got.epoch == epoch
    mem = select(f, epoch=epoch).sort_values(["trial_id", "task", "metric"]).reset_index(drop=True)
    assert sel["value"].to_numpy() == pytest.approx(mem["value"].to_numpy())
    assert list(sel["trial_id"]) == list(mem["trial_id"]) and (sel["seed"].dtype, sel["epoch"].dtype) == ("int64",
                                                                                                          "int64")
    idx = got.index.set_index("trial_id")
    assert idx.loc["m3", "status"] == "failed" and idx.loc["m0", "status"] == "completed"
    assert list(got.index.columns) == ["trial_id", "study", "stage", "dataset", "arch", "variant", "seed", "status"]


def test_store_selection_curves_and_unknown_status(tmp_path) -> None:
    f = _frame()
    root = _store(tmp_path)
    got = store_selection(root, curves=True, trials=_trials(f).iloc[:0])  # no records: status unknown, usable
    assert set(got.index["status"]) == {"unknown"}
    assert "m3" in set(got.selected["trial_id"])
    c = got.curves.set_index(["variant", "epoch"])
    s = validation_scores(f.assign(status="completed")).set_index(["trial_id", "epoch"])["val_delta_m"]
    m = [s[(t, 1)] for t in ("m0", "m1", "m2", "m3")]
    assert c.loc[("m", 1), "mean"] == pytest.approx(np.mean(m))
    assert c.loc[("m", 1), "std"] == pytest.approx(np.std(m, ddof=1))
    assert c.loc[("m", 2), "n"] == 3  # m2's incomplete epoch is not counted
    assert store_selection(root, trials=_trials(f)).curves is None


def test_store_selection_errors_and_notes(tmp_path) -> None:
    f = _frame()
    tune = f.assign(stage="tune", trial_id="tune-" + f["trial_id"])
    root = _store(tmp_path, pd.concat([f, tune], ignore_index=True))
    trials = pd.concat([_trials(f), _trials(tune).assign(stage="tune")], ignore_index=True)
    got = store_selection(root, trials=trials)
    assert got.stage == "final" and got.notes == ["stages final, tune present: analysing stage 'final' only"]
    assert not any(t.startswith("tune-") for t in got.selected["trial_id"])
    with pytest.raises(AnalysisError, match="epoch must be 'best-val', 'last' or an integer"):
        store_selection(root, epoch="first", trials=trials)
    with pytest.raises(AnalysisError, match="no usable rows on split 'train'"):
        store_selection(root, split="train", trials=trials)
    only_test = _store(tmp_path / "t", f[f["split"] == "test"])
    with pytest.raises(AnalysisError, match="best-val selection needs a 'val' split and the store has none"):
        store_selection(only_test, trials=_trials(f))
    two = f.assign(study="s2", trial_id="x" + f["trial_id"])
    root2 = _store(tmp_path / "two", pd.concat([f, two], ignore_index=True))
    with pytest.raises(AnalysisError, match=r"several studies \(s, s2\)"):
        store_selection(root2, trials=_trials(f))
    assert set(store_selection(root2, study="s2", trials=_trials(two).assign(study="s2")).selected["study"]) == {"s2"}


def test_store_selection_refuses_metrics_without_or_with_conflicting_direction(tmp_path) -> None:
    f = _frame()
    g = f.copy()
    g.loc[(g["trial_id"] == "m0") & (g["metric"] == "acc"), "higher_is_better"] = False
    with pytest.raises(AnalysisError, match="conflicting higher_is_better across rows: d/t/acc"):
        store_selection(_store(tmp_path / "a", g), trials=_trials(f))
    h = f.astype({"higher_is_better": object})
    h.loc[(h["trial_id"] == "m1") & (h["metric"] == "err"), "higher_is_better"] = None
    with pytest.raises(AnalysisError, match=r"metric without direction \(null higher_is_better\): d/u/err"):
        store_selection(_store(tmp_path / "b", h), trials=_trials(f))


def test_store_selection_without_the_baseline_warns(tmp_path) -> None:
    f = _frame()
    f = f[f["method"] != "ew"]
    root = _store(tmp_path, f)
    with pytest.warns(UserWarning, match="baseline 'ew' absent from dataset 'd'"):
        got = store_selection(root, trials=_trials(f))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = select(f)
    assert dict(got.selected.groupby("trial_id")["epoch"].first()) == dict(mem.groupby("trial_id")["epoch"].first())


def test_load_then_select_equals_the_store_selection(tmp_path) -> None:
    f = _frame()
    root = _store(tmp_path)
    mem = select(load(root))
    got = store_selection(root, trials=_trials(f).iloc[:0])
    assert len(mem) == len(got.selected)


# --- survivors of the 2026-11-28 mutation run (docs/testing.md) --------------------------------------------
def _per_frame() -> pd.DataFrame:
    """Task t has two metrics (acc, acc2), task u one (err, lower is better); EW's last validation epoch is 1.0
    everywhere. Trial m: epoch 1 (acc 1.2, acc2 1.2, err 1.3), epoch 2 (1.0, 1.0, 1.0).
    per task (w = 100 / (T N_t)): e1 = 25 * 0.2 + 25 * 0.2 - 50 * 0.3 = -5, e2 = 0 -> epoch 2;
    per metric (w = 100 / K):     e1 = 100 / 3 * (0.2 + 0.2 - 0.3) = 10 / 3, e2 = 0 -> epoch 1."""
    metrics = {"acc": ("t", True), "acc2": ("t", True), "err": ("u", False)}
    vals = {"ew0": {1: (0.5, 0.5, 2.0), 2: (1.0, 1.0, 1.0)},
            "m0": {1: (1.2, 1.2, 1.3), 2: (1.0, 1.0, 1.0)}}
    rows = []
    for tid, per_epoch in vals.items():
        method = tid[:-1]
        for epoch, triple in per_epoch.items():
            for (metric, (task, hib)), v in zip(metrics.items(), triple):
                for split in ("val", "test"):
                    rows.append({"study": "s", "stage": "final", "trial_id": tid, "dataset": "d", "arch": "hps",
                                 "method": method, "distribution": None, "seed": 0, "split": split, "epoch": epoch,
                                 "task": task, "metric": metric, "value": v, "higher_is_better": hib})
    f = pd.DataFrame(rows)
    return f.assign(variant=f["method"], status="completed")


def test_select_weights_metrics_per_task_or_per_metric(tmp_path) -> None:
    f = _per_frame()
    by_task = best_val_epochs(f, per="task").set_index("trial_id")
    by_metric = best_val_epochs(f, per="metric").set_index("trial_id")
    assert (by_task.loc["m0", "epoch"], by_metric.loc["m0", "epoch"]) == (2, 1)
    assert by_metric.loc["m0", "val_delta_m"] == pytest.approx(10 / 3)
    scores = validation_scores(f, per="task").set_index(["trial_id", "epoch"])["val_delta_m"]
    assert scores[("m0", 1)] == pytest.approx(-5.0)
    for per, epoch in (("task", 2), ("metric", 1)):
        sel = select(f, per=per)
        assert set(sel.loc[sel["trial_id"] == "m0", "epoch"]) == {epoch}, per
        got = store_selection(_store(tmp_path / per, f), per=per, trials=_trials(f)).selected
        assert set(got.loc[got["trial_id"] == "m0", "epoch"]) == {epoch}, per


def test_store_selection_columns_index_and_exact_messages(tmp_path) -> None:
    f = _frame()
    got = store_selection(_store(tmp_path / "a"), trials=_trials(f)).selected
    assert list(got.columns) == ["study", "stage", "trial_id", "dataset", "arch", "method", "distribution",
                                 "variant", "seed", "task", "metric", "higher_is_better", "value", "epoch"]
    assert list(got.index) == list(range(len(got)))
    only_test = _store(tmp_path / "t", f[f["split"] == "test"])
    with pytest.raises(AnalysisError) as err:
        store_selection(only_test, trials=_trials(f))
    assert str(err.value) == ("best-val selection needs a 'val' split and the store has none "
                              "(use epoch='last'; litmus never selects epochs on the test split)")
    rows = _rows()
    _trial(rows, "m4", "m", 4, {1: (0.7, None), 2: (0.8, None)})
    g = pd.DataFrame(rows).assign(variant=lambda d: d["method"], status="completed")
    g.loc[g["trial_id"] == "m3", "status"] = "failed"
    with pytest.warns(UserWarning) as caught:
        sel = store_selection(_store(tmp_path / "b", g), trials=_trials(g)).selected
    assert [str(w.message) for w in caught] == ["1 trial(s) have no complete validation epoch and are left out of "
                                                "best-val selection"]
    assert "m4" not in set(sel["trial_id"])


def test_categorical_columns_with_an_all_failed_dataset_add_no_group_and_no_warning() -> None:
    """analysis.load gives categorical columns: a dataset whose trials all failed is still a category; it has no
    usable rows, so it gets no reference (no 'baseline absent' warning) and no trial x epoch scores."""
    f = _frame()
    other = f.assign(dataset="e", trial_id="e" + f["trial_id"], status="failed")
    both = pd.concat([f, other], ignore_index=True)
    both = both.astype({c: "category" for c in ("study", "stage", "trial_id", "dataset", "arch", "method",
                                                  "variant", "split", "task", "metric", "status")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = validation_scores(both)
        sel = select(both)
    usable_ids = {t for t in EXPECTED}
    assert set(map(str, s["trial_id"])) == usable_ids and len(s) == 3 * len(usable_ids)
    assert dict(sel.groupby("trial_id")["epoch"].first()) == EXPECTED


def test_store_selection_without_the_baseline_reads_every_methods_reference_trials(tmp_path) -> None:
    """No EW: the reference is the mean of the last validation epoch of every trial, here of two methods (m, n);
    the columnar selection reads both methods' reference rows and picks the in-memory selection's epochs."""
    f = _frame()
    f = f[f["method"] != "ew"]
    n = f.assign(method="n", variant="n", trial_id="n" + f["trial_id"])
    n.loc[n["metric"] == "acc", "value"] += 0.05
    both = pd.concat([f, n], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = select(both)
        got = store_selection(_store(tmp_path, both), trials=_trials(both))
    assert sorted(got.selected["trial_id"].unique()) == ["m0", "m1", "m2", "nm0", "nm1", "nm2"]
    assert dict(got.selected.groupby("trial_id")["epoch"].first()) == dict(mem.groupby("trial_id")["epoch"].first())
