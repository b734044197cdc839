"""study/tuning.py's small deciding pieces against hand-made store rows (mutation testing, docs/testing.md):
the score of an epoch, the EW reference, a stored trial's outcome (pruned or stopped early), the scores
early stopping reads, a resumed tuning stage that reuses finished trials instead of training them again,
and the kept trial when two tie."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from study.driver import NO_MORE_JOBS, Outcome
from study.records import group, trial_record
from study.spec import parse
from study.store import Store
from study.tuning import (TuningSource, _best, best_params, load_best, reference_values, score, storage,
                          stored_outcome, stored_scores, study_name, tuning_path)


def _row(split: str, epoch: int, task: str, metric: str, value: float, hib: bool) -> dict:
    return {"split": split, "epoch": epoch, "task": task, "metric": metric, "value": value, "higher_is_better": hib}


REF = {"left/accuracy": 0.5, "right/abs_err": 0.4}


def _epoch(epoch: int, q: float, split: str = "val") -> list[dict]:
    """Rows whose Delta-m against REF is q percent (both tasks off by q% in their better direction)."""
    return [_row(split, epoch, "left", "accuracy", 0.5 * (1 + q / 100), True),
            _row(split, epoch, "right", "abs_err", 0.4 * (1 - q / 100), False),
            _row(split, epoch, "left", "loss", 7.0, False)]


def test_score_is_delta_m_on_the_asked_split() -> None:
    rows = _epoch(1, 4.0) + _epoch(1, -8.0, "test")
    assert score(rows, REF) == pytest.approx(4.0)
    assert score(rows, REF, split="test") == pytest.approx(-8.0)
    hand = 100 / 2 * ((0.55 - 0.5) / 0.5 - (0.38 - 0.4) / 0.4)
    assert score([_row("val", 1, "left", "accuracy", 0.55, True), _row("val", 1, "right", "abs_err", 0.38, False)],
                 REF) == pytest.approx(hand)
    assert math.isnan(score(_epoch(1, 4.0)[:1], REF))  # a metric missing
    assert math.isnan(score(_epoch(1, 4.0), {}))  # no reference
    assert math.isnan(score(_epoch(1, 4.0, "test"), REF))
    # two metrics of one task weigh half each (per-task Delta-m)
    ref3 = {**REF, "left/f1": 0.2}
    rows3 = _epoch(1, 0.0) + [_row("val", 1, "left", "f1", 0.3, True)]
    assert score(rows3, ref3) == pytest.approx(100 / 2 * (0.5 * 0.5))


def _spec(tmp_path, **tuning):
    return parse({
        "name": "tu", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": {"n_train": 64, "n_val": 32, "n_test": 32, "width": 8},
                      "epochs": 3}],
        "methods": ["ew", "uw"],
        "tuning": {"methods": ["uw"], "trials": 3, "seeds": [100, 101],
                   "shared": {"lr": {"low": 1e-4, "high": 1e-2}}, "sampler": {"type": "random", "seed": 3},
                   **tuning},
        "final": {"seeds": 2},
    })


def _write(store: Store, tid: str, rows: list[dict], status: str = "completed", study: str = "tu") -> None:
    grp = group(study, "tune", tid, {"dataset": "multi_digits", "arch": "hps", "method": "uw", "seed": 0})
    if rows:
        store.write_metrics(grp, rows)
    store.write_trial(trial_record(grp, {"dataset": "multi_digits"}, status, epochs=len({r["epoch"] for r in rows}),
                                   started_at="t"))


def test_study_name_per_replicate(tmp_path) -> None:
    assert study_name(_spec(tmp_path), "d", "hps", "uw") == "tu/d/hps/uw"
    assert study_name(_spec(tmp_path), "d", "hps", "uw", 0) == "tu/d/hps/uw"
    two = _spec(tmp_path, replicates=2, seeds=[100, 101, 102, 103])
    assert [study_name(two, "d", "mtan", "uw", r) for r in (0, 1)] == ["tu/d/mtan/uw/r0", "tu/d/mtan/uw/r1"]


def test_reference_values_last_validation_epoch_mean_without_losses(tmp_path) -> None:
    store = Store(tmp_path / "s")
    _write(store, "empty", [], "completed")  # a reference trial with no rows is skipped, the others still count
    _write(store, "r1", _epoch(1, 50.0) + _epoch(2, 0.0) + _epoch(2, 90.0, "test"))
    _write(store, "r2", _epoch(1, 0.0) + [_row("val", 2, "left", "accuracy", 0.7, True),
                                          _row("val", 2, "right", "abs_err", 0.2, False)])
    got = reference_values(store, ["empty", "r1", "r2"])
    assert got == pytest.approx({"left/accuracy": (0.5 + 0.7) / 2, "right/abs_err": (0.4 + 0.2) / 2})
    assert reference_values(store, ["empty"]) == {}


def test_stored_outcome_of_a_trial_in_the_store(tmp_path) -> None:
    store = Store(tmp_path / "s")
    _write(store, "full", _epoch(1, 2.0) + _epoch(2, 6.0) + _epoch(3, 3.0))
    o = stored_outcome(store, "full", "completed", REF, epochs=3)
    assert (o.status, o.epochs, o.pruned) == ("completed", 3, False)
    assert (o.last_score, o.best_score) == pytest.approx((3.0, 6.0))
    _write(store, "cut", _epoch(1, 2.0) + _epoch(2, 1.0))
    assert stored_outcome(store, "cut", "completed", REF, epochs=3).pruned is True  # the scheduler cut it
    # stopped early by patience (1 epoch without improvement): ran fewer epochs, not pruned
    assert stored_outcome(store, "cut", "completed", REF, epochs=3, patience=1).pruned is False
    assert stored_outcome(store, "cut", "completed", REF, epochs=3, patience=2).pruned is True
    _write(store, "nan", _epoch(1, 2.0)[:1] + _epoch(2, 5.0))  # epoch 1 lacks a metric: no score there
    n = stored_outcome(store, "nan", "completed", REF, epochs=2)
    assert (n.best_score, n.last_score, n.epochs) == pytest.approx((5.0, 5.0, 2))
    _write(store, "none", [])
    e = stored_outcome(store, "none", "completed", REF, epochs=2)
    assert math.isnan(e.best_score) and math.isnan(e.last_score) and e.epochs == 0 and e.pruned
    f = stored_outcome(store, "full", "failed", REF, epochs=3)
    assert f.status == "failed" and math.isnan(f.best_score) and f.epochs == 0


def test_stored_scores_are_the_epochs_before(tmp_path) -> None:
    store = Store(tmp_path / "s")
    _write(store, "t", _epoch(1, 2.0) + _epoch(3, 6.0))
    got = stored_scores(store, "t", REF, 4)
    assert got[0] == pytest.approx(2.0) and math.isnan(got[1]) and got[2] == pytest.approx(6.0) and len(got) == 3
    assert stored_scores(store, "t", REF, 1) == []


def test_best_keeps_the_earliest_of_tied_trials_and_counts_states(tmp_path) -> None:
    st = optuna.create_study(direction="maximize")
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    for value, lr in ((3.0, 0.1), (5.0, 0.2), (5.0, 0.3), (None, 0.4), (None, 0.5), (4.0, 0.6)):
        t = st.ask({"lr": dist})
        if value is None:
            st.tell(t, state=TrialState.FAIL if lr == 0.4 else TrialState.PRUNED)
        else:
            st.tell(t, value)
    st.ask({"lr": dist})  # still running
    e = _best(st)
    assert (e["params"], e["value"], e["number"]) == ({"lr": pytest.approx(st.trials[1].params["lr"])}, 5.0, 1)
    assert (e["trials"], e["complete"], e["pruned"], e["failed"]) == (7, 4, 1, 1)
    assert e["optuna_study"] == st.study_name and "note" not in e


def _drive(spec, store: Store, refs: dict, statuses: dict, profile, retry_failed=False) -> tuple[TuningSource, list]:
    """Run the tuning source to the end; each job 'trains' by writing rows of the planted quality."""
    src = TuningSource(spec, store, refs, statuses, retry_failed=retry_failed)
    ran = []
    while (job := src.next()) not in (None, NO_MORE_JOBS):
        ran.append(job.trial_id)
        q, status = profile(job)
        rows = [r for e in (1, 2, 3) for r in _epoch(e, q)] if status == "completed" else []
        _write(store, job.trial_id, rows, status, study=spec.name)
        src.done(job, Outcome(status, 3 if rows else 0))
    assert job == NO_MORE_JOBS
    return src, ran


def test_a_resumed_stage_reuses_finished_trials(tmp_path) -> None:
    spec = _spec(tmp_path)
    store = Store(spec.store)
    refs = {("multi_digits", "hps"): REF}
    lrs: list[float] = []

    def profile(job):
        if job.config["lr"] not in lrs:
            lrs.append(job.config["lr"])
        k = lrs.index(job.config["lr"])
        failed = k == 1 and job.config["seed"] == 101
        return [3.0, 9.0, 5.0][k], "failed" if failed else "completed"

    _, first = _drive(spec, store, refs, {}, profile)
    assert len(first) == 6
    best = best_params(spec, store)["multi_digits"]["hps"]["uw"]
    assert best["value"] == pytest.approx(5.0) and best["params"]["lr"] == lrs[2]
    assert load_best(store, spec.name) == best_params(spec, store)
    # a new driver on the same store and journal: nothing is asked again, nothing trained again
    _, again = _drive(spec, store, refs, store.statuses(), profile)
    assert again == []
    # the Optuna trials a killed driver left running are finished from the stored trials; the failed seed
    # is trained again only with retry_failed
    st = optuna.load_study(study_name="tu/multi_digits/hps/uw", storage=storage(spec, store))
    assert [t.state for t in st.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


def test_a_killed_driver_leaves_running_optuna_trials_that_resume_without_training(tmp_path) -> None:
    spec = _spec(tmp_path)
    store = Store(spec.store)
    refs = {("multi_digits", "hps"): REF}
    src = TuningSource(spec, store, refs, {})
    jobs = []
    while (job := src.next()) not in (None, NO_MORE_JOBS):
        jobs.append(job)
    assert len(jobs) == 6
    for j in jobs[:4]:  # 4 seeds finished and stored, then the driver died
        q = 2.0 if j.config["seed"] == 100 else 4.0
        _write(store, j.trial_id, [r for e in (1, 2, 3) for r in _epoch(e, q)], study=spec.name)
        src.done(j, Outcome("completed", 3))
    st = optuna.load_study(study_name="tu/multi_digits/hps/uw", storage=storage(spec, store))
    assert [t.state for t in st.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]
    _write(store, jobs[4].trial_id, [], "failed", study=spec.name)  # failed before the driver died
    statuses = store.statuses()
    retry = TuningSource(spec, store, refs, statuses, retry_failed=True)
    assert [j.trial_id for j in retry.queue] == [j.trial_id for j in jobs[4:]]
    resumed = TuningSource(spec, store, refs, statuses)
    assert [j.trial_id for j in resumed.queue] == [jobs[5].trial_id]  # the failed seed counts as finished
    while (job := resumed.next()) not in (None, NO_MORE_JOBS):
        _write(store, job.trial_id, [r for e in (1, 2, 3) for r in _epoch(e, 8.0)], study=spec.name)
        resumed.done(job, Outcome("completed", 3))
    assert job == NO_MORE_JOBS
    st = optuna.load_study(study_name="tu/multi_digits/hps/uw", storage=storage(spec, store))
    assert [t.state for t in st.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert [t.value for t in st.trials[:2]] == pytest.approx([3.0, 3.0])


def test_best_params_without_completed_trials_and_the_file(tmp_path) -> None:
    spec = _spec(tmp_path)
    store = Store(spec.store)
    _drive(spec, store, {("multi_digits", "hps"): REF}, {}, lambda job: (1.0, "failed"))
    out = best_params(spec, store)
    e = out["multi_digits"]["hps"]["uw"]
    assert e["params"] == {} and e["value"] is None and e["note"] == "no completed trial: defaults are used"
    assert tuning_path(store, spec.name) == store.root / "tuning" / "tu.json"
    assert load_best(store, spec.name) == out and load_best(store, "other") == {}


# --- survivors of the 2026-11-28 mutation run (docs/testing.md) --------------------------------------------
def test_studies_take_turns_and_every_job_carries_its_reference(tmp_path) -> None:
    """Two tuning replicates (two Optuna studies) of 3 trials x 2 seeds: asked round-robin, r0 then r1 then r0 ...;
    each job holds the EW reference its score is computed against (the driver's ASHA score reads it)."""
    spec = _spec(tmp_path, replicates=2)  # replicate k runs seeds 100 + 2k, 101 + 2k
    src = TuningSource(spec, Store(spec.store), {("multi_digits", "hps"): REF}, {})
    jobs = []
    while (job := src.next()) not in (None, NO_MORE_JOBS):
        jobs.append(job)
    assert [j.replicate for j in jobs] == [0, 0, 1, 1] * 3
    assert [j.config["seed"] for j in jobs] == [100, 101, 102, 103] * 3
    assert all(j.reference == REF for j in jobs)


def test_a_running_trial_without_recorded_params_gets_the_uninterrupted_runs_params(tmp_path) -> None:
    """A driver killed between Optuna's ask and recording the parameters leaves trial 0 RUNNING without params:
    a new driver records the parameters an uninterrupted study asks for trial 0 and runs those."""
    fresh = _spec(tmp_path / "fresh")
    first = TuningSource(fresh, Store(fresh.store), {("multi_digits", "hps"): REF}, {}).next()
    asked = optuna.load_study(study_name="tu/multi_digits/hps/uw", storage=storage(fresh, Store(fresh.store)))
    params = asked.trials[0].params
    assert set(params) == {"lr", "uw.lr"} and params["lr"] == pytest.approx(first.config["lr"], rel=1e-12)
    spec = _spec(tmp_path / "killed")
    store = Store(spec.store)
    TuningSource(spec, store, {("multi_digits", "hps"): REF}, {})  # creates the study
    st = optuna.load_study(study_name="tu/multi_digits/hps/uw", storage=storage(spec, store))
    st.ask()  # asked, nothing recorded
    assert st.trials[0].state == TrialState.RUNNING and st.trials[0].params == {}
    resumed = TuningSource(spec, store, {("multi_digits", "hps"): REF}, {})
    st = optuna.load_study(study_name="tu/multi_digits/hps/uw", storage=storage(spec, store))
    assert st.trials[0].params == pytest.approx(params, rel=1e-12)
    assert [j.config["lr"] for j in resumed.queue] == pytest.approx([params["lr"]] * 2, rel=1e-12)
    assert [j.config["method_params"] for j in resumed.queue] == [first.config["method_params"]] * 2
    assert [j.config["seed"] for j in resumed.queue] == [100, 101]
