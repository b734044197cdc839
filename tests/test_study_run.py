"""End-to-end studies on a real embedded local Ray, real Parquet and a real Optuna journal (bundled data, tiny)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest

from study.cli import main
from study.run import run_study
from study.spec import parse
from study.store import Store

ROWS_PER_EPOCH = {"multi_digits": 12}  # 3 splits x 2 tasks x (loss, accuracy)
SMALL = {"n_train": 200, "n_val": 100, "n_test": 100, "width": 8}


@pytest.fixture(autouse=True)
def _ray(local_ray):
    """The module's studies share one embedded Ray (tests/conftest.py): each runs with keep_ray=True."""


def metrics(root: Path):
    # every metric row, per-trial parts and compacted files alike (the driver compacts at each stage's end)
    import analysis

    return analysis.load(root, include_loss=True).drop(columns=["variant", "status"])


def assert_no_duplicates(df) -> None:
    assert not df.duplicated(["trial_id", "split", "epoch", "task", "metric"]).any()


@pytest.mark.slow
def test_local_study_tune_and_final_then_resume_is_a_no_op(tmp_path, capsys):
    spec = parse({
        "name": "local", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": SMALL, "epochs": 2}],
        "methods": ["ew", {"name": "rlw", "distributions": ["normal", "dirichlet"]}, "uw"],
        "tuning": {"trials": 2, "seeds": [100], "shared": {"lr": {"low": 1e-4, "high": 1e-2}}},
        "final": {"seeds": 2},
    })
    said: list[str] = []
    res = run_study(spec, say=said.append, keep_ray=True)
    assert res.counts == {"completed": 8, "failed": 0, "diverged": 0, "missing": 0}
    counted = [tuple(map(int, m.group(1, 2))) for m in map(re.compile(r"\] (\d+)/(\d+) done").search, said) if m]
    assert counted and all(k <= n for k, n in counted)  # the EW reference is not counted as a tuning trial
    assert counted[-1][0] == counted[-1][1]
    store = Store(spec.store)
    trials = store.trials("local")
    by_stage = {s: sum(t["stage"] == s for t in trials) for s in ("tune", "final")}
    assert by_stage == {"tune": 1 + 3 * 2, "final": 4 * 2}  # EW reference + 3 methods x 2 Optuna trials
    assert all(t["status"] == "completed" and t["epochs"] == 2 for t in trials)
    df = metrics(spec.store)
    assert len(df) == 15 * 2 * ROWS_PER_EPOCH["multi_digits"]
    assert_no_duplicates(df)
    assert set(df.loc[df.stage == "final", "seed"]) == {0, 1} and set(df.loc[df.stage == "tune", "seed"]) == {100}
    # Optuna: equal budget, all told; best params persisted
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    storage = JournalStorage(JournalFileBackend(str(spec.store / "optuna.log")))
    for m in ("ew", "rlw", "uw"):
        st = optuna.load_study(study_name=f"local/multi_digits/hps/{m}", storage=storage)
        assert [t.state for t in st.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    best = json.loads((spec.store / "tuning" / "local.json").read_text())
    assert set(best["multi_digits"]["hps"]["uw"]["params"]) == {"lr", "uw.lr"}
    # the kept trial is the one whose validation Delta-m (best epoch, vs the EW reference's last validation
    # epoch, losses excluded) is highest: recomputed here from the store's rows, not from Optuna's values
    tune = df[(df.stage == "tune") & (df.split == "val") & (df.metric != "loss")]
    (ref_id,) = json.loads((spec.store / "studies" / "local.json").read_text())["reference_ids"]
    ref_rows = tune[(tune.trial_id == ref_id) & (tune.epoch == tune.loc[tune.trial_id == ref_id, "epoch"].max())]
    ref = {(r.task, r.metric): r.value for r in ref_rows.itertuples()}
    uw_tune = [t for t in trials if t["stage"] == "tune" and t["method"] == "uw"]
    assert len(uw_tune) == 2

    def objective(tid: str) -> float:
        rows = tune[tune.trial_id == tid]
        per_epoch = [100 * sum((r.value - ref[(r.task, r.metric)]) / ref[(r.task, r.metric)] for r in e.itertuples())
                     / len(e) for _, e in rows.groupby("epoch")]  # multi_digits: one accuracy per task
        return max(per_epoch)

    scores = {json.loads(t["config"])["lr"]: objective(t["trial_id"]) for t in uw_tune}
    kept_lr = max(scores, key=scores.get)
    assert best["multi_digits"]["hps"]["uw"]["params"]["lr"] == kept_lr
    assert best["multi_digits"]["hps"]["uw"]["value"] == pytest.approx(scores[kept_lr], abs=1e-9)
    finals = [t for t in trials if t["stage"] == "final" and t["method"] == "uw"]
    assert {json.loads(t["config"])["lr"] for t in finals} == {kept_lr}
    before = {t["trial_id"]: t["finished_at"] for t in trials}
    # rerun: everything is in the store, nothing runs again (answered by the saved plan and the trials table)
    said.clear()
    res = run_study(spec, say=said.append, keep_ray=True)
    assert res.counts["completed"] == 8
    assert said[0].endswith("nothing to run") and said[1:] == [
        "[reference] 1/1 trials already in the store: skipped", "[tune] 6/6 trials already in the store: skipped",
        "[final] 8/8 trials already in the store: skipped"]
    assert {t["trial_id"]: t["finished_at"] for t in store.trials("local")} == before
    assert len(metrics(spec.store)) == len(df)
    assert main(["status", str(spec.store)]) == 0
    out = capsys.readouterr().out
    assert "final      multi_digits/hps/rlw" in out and out.count("    0\n") >= 5


@pytest.mark.slow
def test_failed_and_diverged_trials_are_recorded_and_the_study_goes_on(tmp_path):
    spec = parse({
        "name": "faults", "store": str(tmp_path / "store"), "retries": 1,
        "datasets": [
            {"name": "multi_digits", "options": SMALL, "epochs": 1},
            # a learning rate that makes the loss non-finite: diverged
            {"name": "digit_attributes", "options": SMALL, "epochs": 1, "train": {"optimizer": "sgd", "lr": 1e30,
                                                                                     "divergence_factor": None}},
            # valid config, fails at run time on a machine without CUDA: failed (after 1 retry)
            {"name": "scenes", "options": {"n_train": 20, "n_val": 10, "n_test": 10}, "epochs": 1,
             "train": {"device": "cuda"}},
        ],
        "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": 1},  # a failure costs a worker start
    })
    res = run_study(spec, say=lambda m: None, keep_ray=True)
    assert res.counts == {"completed": 1, "failed": 1, "diverged": 1, "missing": 0}
    trials = {t["dataset"]: t for t in Store(spec.store).trials("faults")}
    assert trials["digit_attributes"]["status"] == "diverged" and "non-finite" in trials["digit_attributes"]["error"]
    assert trials["scenes"]["status"] == "failed" and "CUDA" in trials["scenes"]["error"]
    df = metrics(spec.store)
    assert len(df) == ROWS_PER_EPOCH["multi_digits"] and set(df.dataset) == {"multi_digits"}


@pytest.mark.slow
def test_early_stopping_on_validation_delta_m_stops_every_method_by_one_rule(tmp_path):
    spec = parse({
        "name": "patience", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": SMALL, "epochs": {"max": 10, "patience": 2}}],
        "methods": ["ew", "uw"],
        "tuning": {"trials": 2, "seeds": [100], "shared": {"lr": {"low": 1e-3, "high": 3e-2}}},
        "final": {"seeds": 2},
    })
    res = run_study(spec, say=lambda m: None, keep_ray=True)
    assert res.counts == {"completed": 4, "failed": 0, "diverged": 0, "missing": 0}
    trials = {t["trial_id"]: t for t in Store(spec.store).trials("patience")}
    df = metrics(spec.store)
    val = df[(df.split == "val") & (df.metric != "loss")]
    ref_ids = json.loads((spec.store / "studies" / "patience.json").read_text())["reference_ids"]
    # the EW reference runs all 10 epochs; its last epoch defines B
    ref_rows = val[val.trial_id.isin(ref_ids) & (val.epoch == 10)]
    assert len(ref_ids) >= 1 and len(ref_rows) == 2
    b = ref_rows.groupby("task")["value"].mean()
    stopped = 0
    for tid, t in trials.items():
        if tid in ref_ids:
            continue
        v = val[val.trial_id == tid].pivot_table(index="epoch", columns="task", values="value")
        scores = (100 / 2 * ((v - b) / b).sum(axis=1)).tolist()  # Delta-m by hand, accuracies only
        assert len(scores) == t["epochs"]
        best = int(np.argmax(scores)) + 1
        firsts = [e for e in range(1, len(scores) + 1) if e - (int(np.argmax(scores[:e])) + 1) >= 2]
        if t["epochs"] < 10:
            stopped += 1
            assert t["status"] == "completed" and t["error"] is None
            assert firsts == [t["epochs"]] and best == t["epochs"] - 2
        else:
            assert firsts in ([], [10])
    assert stopped >= 1
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    storage = JournalStorage(JournalFileBackend(str(spec.store / "optuna.log")))
    for m in ("ew", "uw"):  # an early-stopped tuning trial is complete, not pruned
        st = optuna.load_study(study_name=f"patience/multi_digits/hps/{m}", storage=storage)
        assert [t.state for t in st.trials] == [optuna.trial.TrialState.COMPLETE] * 2
