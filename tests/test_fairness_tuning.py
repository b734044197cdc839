"""Tuning is fair: the Optuna objective is the *validation* Delta-m against the EW reference, the best
trial is the one with the highest objective, and the test split never enters.

The tuning stage is driven as the Ray driver drives it (jobs from ``TuningSource.next``, results
written to a real Parquet store, ``TuningSource.done``), with a real Optuna journal, but each job
"trains" by writing planted rows: validation and test disagree on which trial is best, the best
validation epoch is not the last one, and one trial fails, one is pruned. The expected choice is
computed from the planted table by hand. ``train_trial`` (the Ray trainable) is run for real on
bundled data with Ray's ``report`` captured: its score is checked against Delta-m computed by hand
on the validation rows.
"""

from __future__ import annotations

import json
import math

import optuna
import pytest

from study.driver import NO_MORE_JOBS, Outcome
from study.plan import final_jobs, reference_jobs
from study.records import group, trial_record
from study.spec import parse
from study.store import Store
from study.tuning import TuningSource, best_params, reference_values, tuning_path

# The reference (EW) trials' last-epoch validation values; its earlier epoch and its test split differ
REF = {"left": 0.50, "right": 0.40}  # left: accuracy (higher is better); right: abs_err (lower is better)
REF_EARLY = {"left": 0.20, "right": 0.90}
REF_TEST = {"left": 0.90, "right": 0.10}

# Planted profiles of the Optuna trials, in the order they are asked: validation Delta-m q (percent) per
# tuning seed and epoch, and a test Delta-m. By construction (see _rows) Delta-m against REF equals q.
PROFILES = [
    {"val": {100: [4.0, 1.0], 101: [6.0, 1.0]}, "test": 20.0},  # best at its best epoch (mean 5), weak last
    {"val": {100: [2.0, 3.0], 101: [2.0, 3.0]}, "test": -10.0},  # best at the last epoch (mean 3)
    {"val": {100: [-5.0, -6.0], 101: [-5.0, -6.0]}, "test": 0.0},  # the worst
    {"val": {100: [10.0, 9.0], 101: [10.0, 9.0]}, "test": 30.0, "failed": 101},  # one seed failed: FAIL
    {"val": {100: [50.0], 101: [50.0]}, "test": 40.0},  # stopped after 1 of 2 epochs: PRUNED
]
EPOCHS = 2


def _spec(tmp_path, epoch: str):
    return parse({
        "name": "fair", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": {"n_train": 64, "n_val": 32, "n_test": 32, "width": 8},
                      "epochs": EPOCHS}],
        "methods": ["ew", "uw"],
        "tuning": {"methods": ["uw"], "trials": len(PROFILES), "seeds": [100, 101],
                   "shared": {"lr": {"low": 1e-4, "high": 1e-2}}, "sampler": {"type": "random", "seed": 3}},
        "final": {"seeds": 2, "epoch": epoch},
    })


def _rows(split: str, epoch: int, left: float, right: float) -> list[dict]:
    """One epoch of one split: left accuracy, right abs_err, and both losses (never part of Delta-m)."""
    return [
        {"split": split, "epoch": epoch, "task": "left", "metric": "accuracy", "value": left, "higher_is_better": True},
        {"split": split, "epoch": epoch, "task": "right", "metric": "abs_err", "value": right,
         "higher_is_better": False},
        {"split": split, "epoch": epoch, "task": "left", "metric": "loss", "value": 1e6 * left, "higher_is_better": False},
        {"split": split, "epoch": epoch, "task": "right", "metric": "loss", "value": -1e6, "higher_is_better": False},
    ]


def _quality(split: str, epoch: int, q: float) -> list[dict]:
    """Rows whose Delta-m against REF is q: each task off by q% in its better direction."""
    return _rows(split, epoch, REF["left"] * (1 + q / 100), REF["right"] * (1 - q / 100))


def _write(store: Store, spec, job, status: str, rows: list[dict]) -> None:
    grp = group(spec.name, job.stage, job.trial_id, job.config)
    store.write_metrics(grp, rows)
    epochs = max((r["epoch"] for r in rows), default=0)
    store.write_trial(trial_record(grp, job.config, status, epochs=epochs, started_at="t"))


def _run_tuning(spec) -> tuple[Store, dict, list[float]]:
    """The reference, then the tuning stage, with planted results; returns (store, best, lr per profile)."""
    store = Store(spec.store)
    refs = reference_jobs(spec)
    for job in refs:
        _write(store, spec, job, "completed",
               _rows("val", 1, REF_EARLY["left"], REF_EARLY["right"]) + _rows("test", 1, 0.3, 0.3)
               + _rows("val", 2, REF["left"], REF["right"]) + _rows("test", 2, REF_TEST["left"], REF_TEST["right"]))
    ref_values = reference_values(store, [j.trial_id for j in refs])
    source = TuningSource(spec, store, {("multi_digits", "hps"): ref_values}, {})
    lrs: list[float] = []  # lr of each Optuna trial, in the order asked: its index is its profile
    while True:
        batch = []
        while (job := source.next()) not in (None, NO_MORE_JOBS):
            batch.append(job)
        if not batch:
            assert job == NO_MORE_JOBS, "the tuning source waits for nothing"
            break
        for job in batch:
            if job.config["lr"] not in lrs:
                lrs.append(job.config["lr"])
            prof = PROFILES[lrs.index(job.config["lr"])]
            seed = job.config["seed"]
            if prof.get("failed") == seed:
                _write(store, spec, job, "failed", [])
                source.done(job, Outcome("failed"))
                continue
            rows = []
            for e, q in enumerate(prof["val"][seed], start=1):
                rows += _quality("val", e, q) + _quality("test", e, prof["test"])
            _write(store, spec, job, "completed", rows)
            n = len(prof["val"][seed])
            source.done(job, Outcome("completed", n, prof["val"][seed][-1], max(prof["val"][seed]),
                                     pruned=n < EPOCHS))
    return store, best_params(spec, store), lrs


def _expected(epoch: str) -> tuple[int, float]:
    """(profile, objective) of the best valid trial, computed from the planted table."""
    values = {}
    for k, p in enumerate(PROFILES):
        if "failed" in p or any(len(v) < EPOCHS for v in p["val"].values()):
            continue
        per_seed = [max(v) if epoch == "best-val" else v[-1] for v in p["val"].values()]
        values[k] = sum(per_seed) / len(per_seed)
    k = max(values, key=values.get)
    return k, values[k]


def test_reference_is_the_last_validation_epoch_without_losses(tmp_path) -> None:
    spec = _spec(tmp_path, "best-val")
    store = Store(spec.store)
    refs = reference_jobs(spec)
    for i, job in enumerate(refs):  # two reference seeds: the reference is their mean
        _write(store, spec, job, "completed",
               _rows("val", 1, 0.1, 0.1) + _rows("val", 2, 0.4 + 0.2 * i, 0.5 - 0.2 * i) + _rows("test", 2, 0.9, 0.9))
    ref = reference_values(store, [j.trial_id for j in refs])
    assert {k: v for k, v in ref.items() if not k.endswith("/loss")} == pytest.approx(
        {"left/accuracy": 0.5, "right/abs_err": 0.4})


@pytest.mark.parametrize("epoch", ["best-val", "last"])
def test_tuning_keeps_the_trial_with_the_best_validation_objective(tmp_path, epoch: str) -> None:
    spec = _spec(tmp_path, epoch)
    store, best, lrs = _run_tuning(spec)
    assert len(lrs) == len(PROFILES) == len(set(lrs))
    k, value = _expected(epoch)
    # the planted table makes every wrong rule pick another trial
    test_best = max(range(len(PROFILES)), key=lambda i: PROFILES[i]["test"])
    worst = min((0, 1, 2), key=lambda i: sum(PROFILES[i]["val"][100]))
    other_epoch_rule = _expected("last" if epoch == "best-val" else "best-val")[0]
    assert k not in (test_best, worst, other_epoch_rule)

    entry = best["multi_digits"]["hps"]["uw"]
    assert entry["params"]["lr"] == lrs[k]
    assert entry["value"] == pytest.approx(value)
    assert (entry["trials"], entry["complete"], entry["failed"], entry["pruned"]) == (5, 3, 1, 1)
    assert entry["optuna_study"] == "fair/multi_digits/hps/uw"
    assert json.loads(tuning_path(store, spec.name).read_text()) == best

    # Optuna holds the validation objective of every trial: maximised, failures and pruned trials marked
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    st = optuna.load_study(study_name="fair/multi_digits/hps/uw",
                           storage=JournalStorage(JournalFileBackend(str(store.root / "optuna.log"))))
    assert st.direction == optuna.study.StudyDirection.MAXIMIZE
    by_lr = {t.params["lr"]: t for t in st.trials}
    states = [by_lr[lr].state for lr in lrs]
    T = optuna.trial.TrialState
    assert states == [T.COMPLETE, T.COMPLETE, T.COMPLETE, T.FAIL, T.PRUNED]
    for i in range(3):
        per_seed = [max(v) if epoch == "best-val" else v[-1] for v in PROFILES[i]["val"].values()]
        assert by_lr[lrs[i]].value == pytest.approx(sum(per_seed) / len(per_seed))
    assert entry["number"] == by_lr[lrs[k]].number

    # the final stage trains uw with the chosen trial's lr, on the shared final seeds
    finals = [j for j in final_jobs(spec, best) if j.config["method"] == "uw"]
    assert [j.config["lr"] for j in finals] == [lrs[k]] * 2
    assert [j.config["seed"] for j in finals] == [0, 1]


def test_no_completed_trial_keeps_the_defaults(tmp_path) -> None:
    """Every trial of both tuned methods failed: no parameters are kept, the final stage uses the defaults."""
    spec = parse({
        "name": "nothing", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": {"n_train": 64, "n_val": 32, "n_test": 32, "width": 8},
                      "epochs": EPOCHS}],
        "methods": ["ew", "uw"],
        "tuning": {"methods": ["ew", "uw"], "trials": 2, "seeds": [100],
                   "shared": {"lr": {"low": 1e-4, "high": 1e-2}}, "sampler": {"type": "random", "seed": 3}},
        "final": {"seeds": 1},
    })
    store = Store(spec.store)
    for job in reference_jobs(spec):
        _write(store, spec, job, "completed", _rows("val", 1, REF["left"], REF["right"]))
    source = TuningSource(spec, store, {("multi_digits", "hps"): reference_values(
        store, [j.trial_id for j in reference_jobs(spec)])}, {})
    while (job := source.next()) not in (None, NO_MORE_JOBS):
        _write(store, spec, job, "failed", [])
        source.done(job, Outcome("failed"))
    best = best_params(spec, store)
    for m in ("ew", "uw"):
        entry = best["multi_digits"]["hps"][m]
        assert entry["params"] == {} and entry["value"] is None and "defaults" in entry["note"]
        assert (entry["trials"], entry["complete"], entry["failed"]) == (2, 0, 2)
    assert json.loads(tuning_path(store, spec.name).read_text()) == best
    defaults = {j.config["method"]: j.config["lr"] for j in final_jobs(spec, {})}
    assert {j.config["method"]: j.config["lr"] for j in final_jobs(spec, best)} == defaults


def test_a_trial_without_a_score_is_never_kept(tmp_path) -> None:
    """A completed trial whose rows lack a reference metric has no score (told FAIL); one with no rows at all
    stopped before its first epoch (told PRUNED); the kept trial is the one with a score."""
    spec = parse({
        "name": "noscore", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": {"n_train": 64, "n_val": 32, "n_test": 32, "width": 8},
                      "epochs": EPOCHS}],
        "methods": ["ew", "uw"],
        "tuning": {"methods": ["uw"], "trials": 3, "seeds": [100],
                   "shared": {"lr": {"low": 1e-4, "high": 1e-2}}, "sampler": {"type": "random", "seed": 3}},
        "final": {"seeds": 1},
    })
    store = Store(spec.store)
    for job in reference_jobs(spec):
        _write(store, spec, job, "completed", _rows("val", 1, REF["left"], REF["right"]))
    source = TuningSource(spec, store, {("multi_digits", "hps"): reference_values(
        store, [j.trial_id for j in reference_jobs(spec)])}, {})
    lrs: list[float] = []
    while (job := source.next()) not in (None, NO_MORE_JOBS):
        lrs.append(job.config["lr"])
        k = len(lrs) - 1
        rows = [] if k == 1 else [r for e in (1, 2) for r in _quality("val", e, 50.0 if k == 0 else -3.0)]
        if k == 0:  # the best-looking trial lacks right/abs_err: no Delta-m
            rows = [r for r in rows if r["metric"] != "abs_err"]
        _write(store, spec, job, "completed", rows)
        source.done(job, Outcome("completed", EPOCHS if rows else 0))
    entry = best_params(spec, store)["multi_digits"]["hps"]["uw"]
    assert (entry["complete"], entry["failed"], entry["pruned"]) == (1, 1, 1)
    assert entry["params"]["lr"] == lrs[2] and entry["value"] == pytest.approx(-3.0)


# --- the trainable's score ------------------------------------------------------------------------
def _hand_delta_m(rows: list[dict], reference: dict[str, float], split: str) -> float:
    """Delta-m (%) written out: 100/T sum_t mean_i s_ti (M_ti - B_ti) / B_ti over non-loss metrics."""
    per_task: dict[str, list[float]] = {}
    for r in rows:
        key = f"{r['task']}/{r['metric']}"
        if r["split"] == split and key in reference:
            s = 1.0 if r["higher_is_better"] else -1.0
            per_task.setdefault(r["task"], []).append(s * (r["value"] - reference[key]) / reference[key])
    assert per_task
    return 100 * sum(sum(v) / len(v) for v in per_task.values()) / len(per_task)


def test_the_trainables_rows_are_scored_on_validation_never_on_test(monkeypatch) -> None:
    """The Ray trainable reports every split's rows; the driver's score (the ASHA metric, the Optuna
    objective) is Delta-m on the validation rows: checked against a hand computation on a real run whose
    test split gives another value."""
    import trainables.tune as tt
    from study.tuning import score
    from trainables.config import TrainConfig

    reports: list[dict] = []
    monkeypatch.setattr(tt.tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    monkeypatch.setattr(tt.tune, "get_checkpoint", lambda: None)
    cfg = TrainConfig(dataset="multi_digits", dataset_options={"n_train": 96, "n_val": 48, "n_test": 48, "width": 8},
                      epochs=2, batch_size=32, seed=0, num_threads=1, device="cpu")
    tt.train_trial({"train": cfg.to_dict(), "litmus": {"trial_id": "t1", "checkpoint_every": 0}})
    assert [r["epoch"] for r in reports] == [1, 2]
    assert reports[-1]["done_epochs"] is True and reports[0]["done_epochs"] is False
    reference = {"left/accuracy": 0.5, "right/accuracy": 0.4}
    for r in reports:
        assert {row["split"] for row in r["rows"]} == {"train", "val", "test"}
        val = _hand_delta_m(r["rows"], reference, "val")
        test = _hand_delta_m(r["rows"], reference, "test")
        assert abs(val - test) > 1e-6, "the splits agree: the check would not see a swap"
        assert score(r["rows"], reference) == pytest.approx(val, abs=1e-9)
    assert math.isnan(score(reports[0]["rows"], {**reference, "left/missing": 1.0}))  # a missing metric: no score
