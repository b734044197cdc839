"""Tuning candidates: common random numbers across methods, a sampler that treats blow-ups as the worst
outcome, and a tuning stage whose candidates do not depend on completion order or on being interrupted.

The tuning source is driven here by a simulated driver (real Optuna journal, real Parquet store, synthetic
validation scores), so every completion order and kill point can be tried in a second; the driver SIGKILL
test with real training is in test_study_faults.py.
"""

from __future__ import annotations

import math
import random

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from study.driver import NO_MORE_JOBS, Outcome
from study.records import group, now, trial_record
from study.sampling import candidate, history_view, shared_candidates
from study.search_space import space
from study.spec import Range, SpecError, parse
from study.store import Store
from study.tuning import TuningSource, best_params, score, storage, study_name

OPTS = {"n_train": 60, "n_val": 30, "n_test": 30, "width": 8}
REF = {"left/accuracy": 0.5, "right/accuracy": 0.4}


def _spec(tmp_path, datasets=("multi_digits", "digit_attributes"), **tuning):
    return parse({
        "name": "crn", "store": str(tmp_path / "store"),
        "datasets": [{"name": d, "options": OPTS, "epochs": 2} for d in datasets],
        "methods": ["ew", "uw", "cagrad"],
        "tuning": {"trials": 5, "seeds": [100, 101],
                   "shared": {"lr": {"low": 1e-4, "high": 1e-1}, "weight_decay": {"low": 1e-6, "high": 1e-3}},
                   "sampler": {"type": "tpe", "seed": 3, "startup": 3}, **tuning},
        "final": {"seeds": 2},
    })


def test_shared_candidates_are_a_sobol_sequence_shared_by_methods_and_distinct_per_dataset_and_replicate():
    shared = {"lr": Range(1e-4, 1e-1, True), "weight_decay": Range(1e-6, 1e-3, True)}
    a = shared_candidates(shared, 0, "multi_digits", 0, 8)
    assert a == shared_candidates(shared, 0, "multi_digits", 0, 8)
    assert a[:3] == shared_candidates(shared, 0, "multi_digits", 0, 3)  # a prefix does not depend on n
    assert a != shared_candidates(shared, 0, "digit_attributes", 0, 8)
    assert a != shared_candidates(shared, 0, "multi_digits", 1, 8)
    assert a != shared_candidates(shared, 1, "multi_digits", 0, 8)
    u = np.array([[math.log(p["lr"] / 1e-4) / math.log(1e3), math.log(p["weight_decay"] / 1e-6) / math.log(1e3)]
                  for p in a])
    assert ((u >= 0) & (u <= 1)).all()
    # a (t, m, s)-net: each of 8 equal log-intervals of lr holds exactly one of the first 8 points
    assert sorted(np.floor(u[:, 0] * 8).astype(int)) == list(range(8))
    assert sorted(np.floor(u[:, 1] * 8).astype(int)) == list(range(8))


def test_startup_candidates_share_lr_and_weight_decay_across_methods(tmp_path):
    spec = _spec(tmp_path)
    got = {}
    for m in spec.methods:
        sp = space(spec, m)
        got[m.name] = [candidate(sp, spec.tuning.shared, sampler="tpe", sampler_seed=3, startup=3,
                                 study=study_name(spec, "multi_digits", "hps", m.name), dataset="multi_digits",
                                 replicate=0, number=n, history=[]) for n in range(3)]
    shared = [{k: p[k] for k in ("lr", "weight_decay")} for p in got["ew"]]
    for m in ("uw", "cagrad"):
        assert [{k: p[k] for k in ("lr", "weight_decay")} for p in got[m]] == shared
    assert set(got["uw"][0]) == {"lr", "weight_decay", "uw.lr"} and set(got["cagrad"][0]) == {"lr", "weight_decay",
                                                                                                 "cagrad.c"}
    assert len({p["lr"] for p in got["ew"]}) == 3


def test_failed_trials_enter_the_model_as_the_worst_value():
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    made = [optuna.trial.create_trial(params={"x": 0.1}, distributions=dist, value=2.0),
            optuna.trial.create_trial(params={"x": 0.2}, distributions=dist, value=-3.0),
            optuna.trial.create_trial(params={"x": 0.9}, distributions=dist, state=TrialState.FAIL),
            optuna.trial.create_trial(params={"x": 0.5}, distributions=dist, state=TrialState.PRUNED)]
    view = history_view(made)
    assert [(t.state, t.value) for t in view] == [(TrialState.COMPLETE, 2.0), (TrialState.COMPLETE, -3.0),
                                                  (TrialState.COMPLETE, -3.0), (TrialState.PRUNED, None)]
    # without any completed trial a failure says nothing about good or bad regions
    assert [t.state for t in history_view(made[2:])] == [TrialState.PRUNED]


def test_score_is_the_analysis_delta_m():
    rows = [{"split": "val", "task": "left", "metric": "accuracy", "value": 0.55, "higher_is_better": True},
            {"split": "val", "task": "right", "metric": "accuracy", "value": 0.30, "higher_is_better": True},
            {"split": "val", "task": "right", "metric": "loss", "value": 9.0, "higher_is_better": False},
            {"split": "test", "task": "left", "metric": "accuracy", "value": 0.0, "higher_is_better": True}]
    # 100/2 * ((0.55-0.5)/0.5 + (0.30-0.4)/0.4), computed by hand
    assert score(rows, REF) == pytest.approx(50 * (0.1 - 0.25))
    assert math.isnan(score(rows[1:], REF))  # a missing metric is not skipped


# --- the tuning stage under a simulated driver --------------------------------------------------------
def _value(config: dict, task: int) -> float:
    """A smooth synthetic validation accuracy of a config (best near lr = 3e-3), seed noise included."""
    lr = config["lr"]
    extra = sum(float(v) for v in config["method_params"].values() if isinstance(v, (int, float)))
    noise = random.Random(f"{config['seed']}/{task}").gauss(0, 0.005)
    return 0.3 + 0.4 * math.exp(-(math.log10(lr) + 2.5) ** 2) + 0.01 * extra + noise + 0.05 * task


def _stored(job) -> dict:
    return {**job.config, "replicate": job.replicate}  # as the driver's store writer records it


def _run(spec, store: Store, order: random.Random, slots: int, kill_after: int | None = None) -> bool:
    """Drive the tuning source like the Ray driver does, finishing running jobs in ``order``; lr > 0.03
    diverges. Returns False if "killed" after ``kill_after`` finished jobs (running ones are left running)."""
    refs = {(ds.name, "hps"): REF for ds in spec.datasets}
    src = TuningSource(spec, store, refs, store.statuses(spec.name))
    running, finished = [], 0
    while True:
        job = None
        while len(running) < slots:
            job = src.next()
            if job is None or job == NO_MORE_JOBS:
                break
            grp = group(spec.name, "tune", job.trial_id, job.config)
            store.write_trial(trial_record(grp, _stored(job), "running", epochs=0, started_at=now()))
            running.append(job)
        if not running:
            assert job == NO_MORE_JOBS, "the tuning source waits with nothing running"
            return True
        job = running.pop(order.randrange(len(running)))
        grp = group(spec.name, "tune", job.trial_id, job.config)
        if job.config["lr"] > 0.03:
            store.write_trial(trial_record(grp, _stored(job), "diverged", epochs=1, started_at=now()))
            src.done(job, Outcome("diverged", 1))
        else:
            rows = [{"split": "val", "epoch": e, "task": t, "metric": "accuracy",
                     "value": _value(job.config, i) + 0.01 * e, "higher_is_better": True}
                    for e in (1, 2) for i, t in enumerate(("left", "right"))]
            store.write_metrics(grp, rows)
            store.write_trial(trial_record(grp, _stored(job), "completed", epochs=2, started_at=now()))
            src.done(job, Outcome("completed", 2))
        finished += 1
        if kill_after is not None and finished >= kill_after:
            return False


def _studies(spec, store: Store) -> dict[str, list[tuple]]:
    stor = storage(spec, store)
    out = {}
    for s in optuna.get_all_study_summaries(stor):
        st = optuna.load_study(study_name=s.study_name, storage=stor)
        out[s.study_name] = [(t.number, t.params, t.state, t.value) for t in st.trials]
    return out


def _ids(store: Store) -> set[str]:
    return {t["trial_id"] for t in store.trials() if t["status"] != "running"}


@pytest.mark.parametrize("replicates", [1, 2])
def test_tuning_candidates_do_not_depend_on_completion_order_or_interruptions(tmp_path, replicates):
    spec = _spec(tmp_path / "a", ("multi_digits",), replicates=replicates)
    ref_store = Store(spec.store)
    assert _run(spec, ref_store, random.Random(0), slots=1)
    expected, ids = _studies(spec, ref_store), _ids(ref_store)
    assert len(expected) == 3 * replicates and all(len(v) == 5 for v in expected.values())
    states = [t[2] for v in expected.values() for t in v]
    assert TrialState.FAIL in states and TrialState.COMPLETE in states  # some candidates diverged
    # common random numbers: in the start-up phase every method on a dataset tries the same lr, weight decay
    for ds in ("multi_digits",):
        for r in range(replicates):
            firsts = {m: [(p["lr"], p["weight_decay"]) for _, p, _, _ in expected[study_name(spec, ds, "hps", m, r)][:3]]
                      for m in ("ew", "uw", "cagrad")}
            assert firsts["ew"] == firsts["uw"] == firsts["cagrad"]
    if replicates == 2:  # independent replicates: other candidates, other (disjoint) seeds
        assert expected["crn/multi_digits/hps/ew/r0"][0][1] != expected["crn/multi_digits/hps/ew/r1"][0][1]
        seeds = {(t["replicate"], t["seed"]) for t in ref_store.trials()}
        assert seeds == {(0, 100), (0, 101), (1, 102), (1, 103)}
    # other completion orders and concurrency
    for k, slots in enumerate((5,)):
        spec_k = _spec(tmp_path / f"o{k}", ("multi_digits",), replicates=replicates)
        store = Store(spec_k.store)
        assert _run(spec_k, store, random.Random(k + 1), slots=slots)
        assert _studies(spec_k, store) == expected and _ids(store) == ids
    # killed after 4, 11, 19 finished jobs (any number of running trials lost), then resumed
    spec_k = _spec(tmp_path / "kill", ("multi_digits",), replicates=replicates)
    store = Store(spec_k.store)
    rng = random.Random(7)
    for kill_after in (4, 11, 19):
        if _run(spec_k, store, rng, slots=4, kill_after=kill_after):
            break
    assert _run(spec_k, store, rng, slots=4)
    assert _studies(spec_k, store) == expected and _ids(store) == ids
    best = best_params(spec_k, store)
    entry = best["multi_digits"]["hps"]["uw"]
    assert entry["value"] == max(v for _, _, s, v in expected[study_name(spec, "multi_digits", "hps", "uw")]
                                 if s == TrialState.COMPLETE)
    assert entry["params"]["lr"] <= 0.03  # a diverged candidate is never the winner
    assert len(entry.get("replicates", [entry])) == replicates


@pytest.mark.parametrize("field,value,message", [
    ("replicates", "3", "tuning.replicates: must be an integer >= 1, got '3'"),
    ("replicates", 0, "tuning.replicates: must be an integer >= 1, got 0"),
    ("replicates", 2.5, "tuning.replicates: must be an integer >= 1, got 2.5"),
    ("replicates", 1000, "tuning.replicates: at most 100, got 1000"),
    ("sampler", {"type": "tpe", "startup": "x"}, "tuning.sampler.startup: must be an integer >= 1, got 'x'"),
])
def test_bad_tuning_fields_fail_with_their_path(tmp_path, field, value, message):
    with pytest.raises(SpecError, match=f"^{message}"):
        _spec(tmp_path, **{field: value})


def test_replicate_seeds_must_stay_disjoint_from_the_final_seeds(tmp_path):
    with pytest.raises(SpecError, match=r"^tuning.replicates: the tuning seeds \[0, 1\] overlap the final seeds"):
        parse({"name": "x", "datasets": [{"name": "multi_digits", "options": OPTS}], "methods": ["ew"],
               "tuning": {"seeds": [0], "replicates": 2}, "final": {"seeds": [1, 2]}})


def test_tuning_score_equals_the_reported_delta_m():
    """The tuning objective and the analysis compute one Delta-m: same rows, same baseline, same number."""
    import pandas as pd

    from analysis.delta_m import per_seed

    vals = {"ew": {"left": 0.5, "right": 0.4}, "uw": {"left": 0.61, "right": 0.37}}
    sel = pd.DataFrame([{"trial_id": m, "dataset": "multi_digits", "arch": "hps", "variant": m, "method": m,
                         "distribution": None, "seed": 0, "task": t, "metric": "accuracy", "value": v,
                         "higher_is_better": True} for m, d in vals.items() for t, v in d.items()])
    reported = per_seed(sel, baseline="ew").set_index("trial_id")["delta_m"]["uw"]
    rows = [{"split": "val", "task": t, "metric": "accuracy", "value": v, "higher_is_better": True}
            for t, v in vals["uw"].items()]
    assert score(rows, REF) == pytest.approx(reported, rel=1e-12)
    assert reported == pytest.approx(50 * (0.11 / 0.5 - 0.03 / 0.4))


def test_each_replicate_winner_runs_on_the_final_seeds(tmp_path):
    from study.plan import final_jobs
    spec = _spec(tmp_path, ("multi_digits",), replicates=2)
    best = {"multi_digits": {"hps": {m: {"params": {"lr": 1e-3}, "replicates": [
        {"params": {"lr": 1e-3, "weight_decay": 1e-5}}, {"params": {"lr": 1e-3, "weight_decay": 1e-5}}]}
        for m in ("ew", "uw", "cagrad")}}}
    jobs = final_jobs(spec, best)
    assert len(jobs) == 3 * 2 * 2 and len({j.trial_id for j in jobs}) == 12  # same winners, distinct trials
    assert sorted((j.replicate, j.config["seed"]) for j in jobs if j.key[2] == "uw") == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(j.config["lr"] == 1e-3 for j in jobs)


def test_the_early_stopping_rule():
    from study.convergence import best_epoch, should_stop
    assert best_epoch([1.0, 3.0, 3.0, 2.0]) == 2 and best_epoch([math.nan, math.nan]) == 0
    assert not should_stop([1.0, 2.0, 3.0], 2)
    assert not should_stop([1.0, 3.0, 2.0], 2) and should_stop([1.0, 3.0, 2.0, 2.5], 2)
    assert should_stop([1.0, 3.0, 3.0, 2.0], 2)  # a tie is no improvement
    assert should_stop([math.nan, math.nan], 2) and not should_stop([1.0, 0.0, 0.0], None)


@pytest.mark.parametrize("epochs,message", [
    ({"max": 10, "patience": "3"}, r"datasets\[0\].epochs.patience: must be an integer >= 1, got '3'"),
    ({"max": 10, "patience": 0}, r"datasets\[0\].epochs.patience: must be an integer >= 1, got 0"),
    ({"max": 2.5, "patience": 1}, r"datasets\[0\].epochs.max: must be an integer >= 1, got 2.5"),
    ({"max": 10, "wait": 1}, r"datasets\[0\].epochs.wait: unknown field; allowed: max, patience"),
    ("10", r"datasets\[0\].epochs: must be an integer >= 1, got '10'"),
])
def test_bad_epochs_fail_with_their_path(epochs, message):
    with pytest.raises(SpecError, match=f"^{message}"):
        parse({"name": "x", "datasets": [{"name": "multi_digits", "options": OPTS, "epochs": epochs}],
               "methods": ["ew"]})


def test_patience_is_part_of_the_trial_and_the_reference_runs_for_it(tmp_path):
    from study.plan import final_jobs, reference_jobs
    d = {"name": "x", "datasets": [{"name": "multi_digits", "options": OPTS, "epochs": {"max": 9, "patience": 2}}],
         "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": 1}}
    spec = parse(d)
    refs, finals = reference_jobs(spec), final_jobs(spec, {})
    assert len(refs) == 1 and refs[0].patience is None and refs[0].config["epochs"] == 9
    assert finals[0].patience == 2 and finals[0].config["epochs"] == 9
    d["datasets"][0]["epochs"] = 9
    assert final_jobs(parse(d), {})[0].trial_id != finals[0].trial_id and reference_jobs(parse(d)) == []


def test_a_design_that_cannot_decide_is_warned_about_before_the_run():
    from study.run_cli import design_warning
    d = {"name": "x", "datasets": [{"name": "multi_digits", "options": OPTS}], "methods": ["ew", "rlw"],
         "final": {"seeds": 1}}
    assert design_warning(parse(d)).startswith("final.seeds: no outcome can be significant")
    d["final"]["seeds"] = 4
    assert design_warning(parse(d)) is None
