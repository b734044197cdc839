"""Delta-m, selection and readers against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import analysis
from analysis import AnalysisError
from analysis.naming import group_of, resolve_baseline, split_combination

from analysis_fixtures import SyntheticStudy, make_store, rows, store_from_rows

DIRS = {("seg", "miou"): True, ("seg", "acc"): True, ("depth", "err"): False}


def _small(tmp_path):
    recs = []
    # baseline ew: seeds 0, 1 -> means miou 0.5, acc 0.8, err 0.4
    recs += rows("d", "ew", 0, {("seg", "miou"): 0.4, ("seg", "acc"): 0.8, ("depth", "err"): 0.3}, DIRS)
    recs += rows("d", "ew", 1, {("seg", "miou"): 0.6, ("seg", "acc"): 0.8, ("depth", "err"): 0.5}, DIRS)
    # method m: means miou 0.55, acc 0.84, err 0.5
    recs += rows("d", "m", 0, {("seg", "miou"): 0.55, ("seg", "acc"): 0.84, ("depth", "err"): 0.5}, DIRS)
    recs += rows("d", "m", 1, {("seg", "miou"): 0.55, ("seg", "acc"): 0.84, ("depth", "err"): 0.5}, DIRS)
    return store_from_rows(tmp_path / "store", recs)


def test_delta_m_matches_hand_computation_per_task_and_per_metric(tmp_path):
    frame = analysis.load(_small(tmp_path))
    sel = analysis.select(frame, epoch="last")
    dm = analysis.delta_m(sel, baseline="ew").set_index("variant")
    # per task: seg = mean(+10%, +5%) = 7.5%; depth (lower is better) = -(0.5-0.4)/0.4 = -25%
    assert dm.loc["m", "delta_m"] == pytest.approx((7.5 - 25.0) / 2)
    assert dm.loc["ew", "delta_m"] == pytest.approx(0.0)
    dm_metric = analysis.delta_m(sel, baseline="ew", per="metric").set_index("variant")
    assert dm_metric.loc["m", "delta_m"] == pytest.approx((10 + 5 - 25) / 3)


def test_per_seed_delta_m_averages_to_delta_m_of_means(tmp_path):
    sel = analysis.select(analysis.load(_small(tmp_path)), epoch="last")
    ps = analysis.per_seed(sel, "ew")
    dm = analysis.delta_m(sel, "ew").set_index("variant")
    for variant, g in ps.groupby("variant"):
        assert g["delta_m"].mean() == pytest.approx(dm.loc[variant, "delta_m"])


def test_bootstrap_ci_covers_the_point_and_is_nan_for_one_seed(tmp_path):
    store = make_store(tmp_path / "s", SyntheticStudy({"d": {"ew": 0, "rlw:normal": 2.0}}, seeds=list(range(6)), epochs=3))
    dm = analysis.delta_m(analysis.select(analysis.load(store))).set_index("variant")
    assert dm.loc["rlw:normal", "ci_low"] < dm.loc["rlw:normal", "delta_m"] < dm.loc["rlw:normal", "ci_high"]
    assert dm.loc["rlw:normal", "delta_m"] == pytest.approx(2.0, abs=0.6)
    one = make_store(tmp_path / "one", SyntheticStudy({"d": {"ew": 0, "uw": 1.0}}, seeds=[0], epochs=2))
    dm1 = analysis.delta_m(analysis.select(analysis.load(one)))
    assert dm1["ci_low"].isna().all() and (dm1["n_seeds"] == 1).all()


def test_best_val_selects_on_validation_never_on_test(tmp_path):
    d = {("t", "acc"): True}
    recs = []
    for seed in (0, 1):
        for variant in ("ew", "m"):
            # validation peaks at epoch 2; test would peak at epoch 3
            for epoch, (v, t) in enumerate([(0.5, 0.5), (0.9, 0.6), (0.7, 0.99)], start=1):
                recs += rows("d", variant, seed, {("t", "acc"): v}, d, epoch=epoch, split="val")
                recs += rows("d", variant, seed, {("t", "acc"): t}, d, epoch=epoch, split="test")
    frame = analysis.load(store_from_rows(tmp_path / "s", recs))
    sel = analysis.select(frame, epoch="best-val")
    assert set(sel["epoch"]) == {2} and np.allclose(sel["value"], 0.6)
    assert set(analysis.select(frame, epoch="last")["epoch"]) == {3}
    assert set(analysis.select(frame, epoch=1)["epoch"]) == {1}


def test_best_val_without_val_split_raises(tmp_path):
    frame = analysis.load(_small(tmp_path))
    with pytest.raises(AnalysisError, match="val"):
        analysis.select(frame, epoch="best-val")


def test_best_val_direction_lower_is_better(tmp_path):
    d = {("t", "err"): False}
    recs = []
    for variant in ("ew", "m"):
        for epoch, v in enumerate([0.5, 0.2, 0.4], start=1):
            recs += rows("d", variant, 0, {("t", "err"): v}, d, epoch=epoch, split="val")
            recs += rows("d", variant, 0, {("t", "err"): v}, d, epoch=epoch, split="test")
    sel = analysis.select(analysis.load(store_from_rows(tmp_path / "s", recs)))
    assert set(sel["epoch"]) == {2}


def test_load_filters_and_accepts_file_and_dataset_dir(tmp_path):
    store = make_store(tmp_path / "s", SyntheticStudy({"a": {"ew": 0}, "b": {"ew": 0}}, seeds=[0], epochs=2))
    assert set(analysis.load(store, dataset="a")["dataset"]) == {"a"}
    assert set(analysis.load(store, stage=["final"])["stage"]) == {"final"}
    assert len(analysis.load(store / "metrics")) == len(analysis.load(store))
    one = next((store / "metrics").glob("*.parquet"))
    assert analysis.load(one)["trial_id"].nunique() == 1
    with pytest.raises(AnalysisError, match="no metric rows"):
        analysis.load(store, study="nope")
    trials = analysis.load_trials(store)
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}


def test_hidden_and_tmp_files_are_ignored(tmp_path):
    store = make_store(tmp_path / "s", SyntheticStudy({"a": {"ew": 0}}, seeds=[0], epochs=2))
    (store / "metrics" / "x.parquet.tmp").write_bytes(b"partial")
    (store / "metrics" / ".hidden.parquet").write_bytes(b"junk")
    (store / "metrics" / "_tmp.parquet").write_bytes(b"junk")
    assert len(analysis.load(store)) == 2 * 3 * 6


def test_empty_store_and_corrupted_file(tmp_path):
    (tmp_path / "empty" / "metrics").mkdir(parents=True)
    with pytest.raises(AnalysisError, match="no metrics"):
        analysis.load(tmp_path / "empty")
    with pytest.raises(AnalysisError, match="not found"):
        analysis.load(tmp_path / "missing")
    store = make_store(tmp_path / "s", SyntheticStudy({"a": {"ew": 0, "uw": 0}}, seeds=[0, 1], epochs=2))
    bad = store / "metrics" / "zz-corrupt.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(AnalysisError, match="zz-corrupt.parquet"):
        analysis.load(store)


def test_metric_without_direction_raises(tmp_path):
    recs = rows("d", "ew", 0, {("t", "acc"): 0.5}, {("t", "acc"): True})
    frame = pd.DataFrame(recs)
    frame["higher_is_better"] = pd.array([None], dtype="boolean")
    path = tmp_path / "s" / "metrics"
    path.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame, schema=analysis.store.METRICS_SCHEMA, preserve_index=False),
                   path / "a.parquet")
    with pytest.raises(AnalysisError, match="without direction.*d/t/acc"):
        analysis.load(tmp_path / "s")


def test_baseline_absent_raises(tmp_path):
    sel = analysis.select(analysis.load(_small(tmp_path)), epoch="last")
    with pytest.raises(AnalysisError, match="absent"):
        analysis.delta_m(sel, baseline="cagrad")


def test_naming_groups_and_baseline_resolution():
    # the family recorded in the trials table wins (a plugin gradient method needs no list in analysis)
    recorded = {"cagrad": "gradient", "my_plugin_grad": "gradient", "uw": "loss", "rgw:normal": "random"}
    assert group_of("cagrad", recorded) == "gradient" and group_of("my_plugin_grad", recorded) == "gradient"
    assert group_of("uw", recorded) == "loss" and group_of("rgw:normal", recorded) == "random"
    # without a trials table: the name's structure only
    assert group_of("rlw:normal") == "random" and group_of("rgw:dirichlet") == "random"
    assert group_of("rlw+cagrad") == "gradient" and group_of("uw") == "loss" and group_of("ew") == "loss"
    assert resolve_baseline("rlw", ["rlw:normal", "rlw:uniform", "ew"]) == "rlw:normal"
    assert resolve_baseline("rlw:uniform", ["rlw:normal", "rlw:uniform"]) == "rlw:uniform"
    assert resolve_baseline("rlw", ["rlw:dirichlet", "ew"]) == "rlw:dirichlet"
    with pytest.raises(AnalysisError, match="ambiguous"):
        resolve_baseline("rlw", ["rlw:uniform", "rlw:dirichlet"])
    assert split_combination("rlw+cagrad:normal") == ("rlw:normal", "cagrad")
    assert split_combination("cagrad", {"cagrad": "gradient"}) == ("ew", "cagrad")
    assert split_combination("my_plugin_grad", {"my_plugin_grad": "gradient"}) == ("ew", "my_plugin_grad")
    assert split_combination("rgw:normal") == ("ew", "rgw:normal")
    assert split_combination("uw") == ("uw", "vanilla")


def test_failed_trials_are_counted_not_used(tmp_path):
    spec = SyntheticStudy({"d": {"ew": 0, "uw": 1.0}}, seeds=[0, 1, 2], epochs=2,
                status={("d", "uw", 2): "diverged", ("d", "ew", 1): "failed"})
    store = make_store(tmp_path / "s", spec)
    frame = analysis.load(store)
    sel = analysis.select(frame)
    counts = analysis.cell_counts(frame, analysis.load_trials(store), sel).set_index("variant")
    assert counts.loc["uw", "diverged"] == 1 and counts.loc["uw", "seeds"] == 2
    assert counts.loc["uw", "missing_seeds"] == "2"
    assert counts.loc["ew", "failed"] == 1 and counts.loc["ew", "missing_seeds"] == "1"
    dm = analysis.delta_m(sel).set_index("variant")
    assert dm.loc["uw", "n_seeds"] == 2 and dm.loc["ew", "n_seeds"] == 2


def test_analysis_imports_neither_trainables_study_nor_ray():
    import subprocess
    import sys
    code = ("import sys, analysis, analysis.cli, analysis.plots, analysis.report; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('trainables', 'study', 'ray', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_metrics_connection_takes_its_spill_dir_with_it(tmp_path, monkeypatch):
    """DuckDB's spill dir (a fresh temp dir per connection) is removed when the connection goes."""
    import gc

    from analysis.store import connect_metrics

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    store = make_store(tmp_path / "s", SyntheticStudy({"d": {"ew": 0, "uw": 1.0}}, seeds=[0, 1], epochs=2))
    con, _ = connect_metrics(store, materialize=True)
    spill = [p for p in (tmp_path / "tmp").iterdir() if p.name.startswith("litmus-duckdb-")]
    assert len(spill) == 1 and con.execute("SELECT count(*) FROM m").fetchone()[0] > 0
    con.close()
    del con
    gc.collect()
    assert not spill[0].exists()
