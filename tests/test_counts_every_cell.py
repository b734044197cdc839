"""Every cell (dataset x arch x variant) is shown with its completed/failed/diverged/missing counts, also with no
completed trial; a store with nothing completed still reports its counts, exit 1 (issue 10, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis import synthetic
from analysis.counts import cell_counts
from analysis.report import write_report
from analysis.store import load_trials
from study.cli import main

VARIANTS = {"ew": 0.0, "rlw:normal": 0.5, "uw": -0.5}


def _store(tmp_path: Path, failed_datasets=("broken",), diverged=(), seeds=(0, 1, 2, 3)) -> Path:
    status = {}
    for ds in failed_datasets:
        for v in VARIANTS:
            for s in seeds:
                status[(ds, v, s)] = "failed"
    for key in diverged:
        status[key] = "diverged"
    spec = synthetic.SyntheticStudy(effects={"fine": dict(VARIANTS), "broken": dict(VARIANTS)}, seeds=list(seeds), epochs=2,
                          status=status, study="cells")
    trials = synthetic.trials_frame(spec)
    metrics = synthetic.metrics_frame(spec)
    ok = set(trials.loc[trials["status"] == "completed", "trial_id"])
    if ok:
        root = synthetic.write_store(tmp_path / "store", metrics[metrics["trial_id"].isin(ok)], trials)
    else:  # nothing completed: a trials table and an empty metrics folder, as the driver leaves it
        root = synthetic.write_store(tmp_path / "store", metrics.iloc[:1], trials)
        for f in (root / "metrics").glob("*.parquet"):
            f.unlink()
    # the study's plan (as study/plan.py saves it): 5 final seeds planned, 4 run -> 1 missing per cell
    plan = {"spec": {"name": "cells", "datasets": [{"name": "fine"}, {"name": "broken"}], "archs": ["hps"],
                     "methods": [{"name": "ew", "distributions": [None]}, {"name": "rlw", "distributions": ["normal"]},
                                 {"name": "uw", "distributions": [None]}],
                     "final_seeds": [0, 1, 2, 3, 4]}}
    (root / "studies").mkdir()
    (root / "studies" / "cells.json").write_text(json.dumps(plan))
    return root


def _cells(df: pd.DataFrame) -> dict:
    return {(r["dataset"], r["variant"]): (r["completed"], r["failed"], r["diverged"], r["missing"])
            for _, r in df.iterrows()}


def test_a_dataset_whose_trials_all_failed_is_in_counts_csv_and_the_verdict_table(tmp_path):
    root = _store(tmp_path, diverged=[("fine", "uw", 0)])
    index = write_report(root, tmp_path / "rep", figures=False, n_resamples=200)
    cells = _cells(pd.read_csv(tmp_path / "rep" / "counts.csv"))
    assert cells[("broken", "ew")] == (0, 4, 0, 1) and cells[("broken", "rlw:normal")] == (0, 4, 0, 1)
    assert cells[("fine", "uw")] == (3, 0, 1, 1) and cells[("fine", "ew")] == (4, 0, 0, 1)
    assert len(cells) == 6
    text = index.read_text()
    for v in VARIANTS:
        assert f"| broken | {v} |" in text, v
    assert "no completed trial (4 failed, 1 missing)" in text


def test_nothing_completed_still_reports_the_counts_and_exits_1(tmp_path, capsys):
    root = _store(tmp_path, failed_datasets=("fine", "broken"))
    assert main(["report", str(root), "--out", str(tmp_path / "rep"), "--no-figures"]) == 1
    out = capsys.readouterr()
    assert "no completed trial" in out.err and out.err.strip().count("\n") == 0
    cells = _cells(pd.read_csv(tmp_path / "rep" / "counts.csv"))
    assert len(cells) == 6 and all(c == (0, 4, 0, 1) for c in cells.values())
    assert "| fine | ew |" in (tmp_path / "rep" / "index.md").read_text()


def test_cell_counts_keep_cells_without_metric_rows(tmp_path):
    root = _store(tmp_path)
    trials = load_trials(root)
    index = trials[trials["status"] == "completed"][["trial_id", "dataset", "arch", "variant", "seed", "status",
                                                      "study", "stage"]]
    got = _cells(cell_counts(index, trials))
    assert got[("broken", "uw")][:3] == (0, 4, 0)
