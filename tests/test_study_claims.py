"""README/docs claims on real Ray (slow): ASHA pruning under the equal tuning budget, and
``litmus run --ray-storage`` as the place checkpoints of an interrupted run are resumed from."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml

from study.cli import main
from study.plan import final_jobs
from study.records import group, trial_record
from study.run import run_study
from study.spec import parse
from study.store import Store

SMALL = {"n_train": 96, "n_val": 48, "n_test": 48, "width": 4}


@pytest.fixture(autouse=True)
def _ray(local_ray):
    """One embedded Ray for the module (tests/conftest.py); `litmus run` below reuses it, then ends it."""


@pytest.mark.slow
def test_asha_prunes_tuning_trials_within_the_equal_budget(tmp_path) -> None:
    spec = parse({
        "name": "asha", "store": str(tmp_path / "store"),
        "datasets": [{"name": "multi_digits", "options": SMALL, "epochs": 4, "train": {"batch_size": 32}}],
        "methods": ["ew", "uw"], "checkpoint_every": 0,
        "tuning": {"trials": 4, "seeds": [100], "shared": {"lr": {"low": 1e-5, "high": 1e-1}},
                   "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}},
        "final": {"seeds": 1},
    })
    res = run_study(spec, say=lambda m: None, num_cpus=2, keep_ray=True)
    assert res.counts == {"completed": 2, "failed": 0, "diverged": 0, "missing": 0}
    trials = Store(spec.store).trials("asha")
    plan = json.loads((spec.store / "studies" / "asha.json").read_text())
    ref_ids = set(plan["reference_ids"])
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(spec.store / "optuna.log")))
    pruned_total = 0
    for m in ("ew", "uw"):
        st = optuna.load_study(study_name=f"asha/multi_digits/hps/{m}", storage=storage)
        states = [t.state for t in st.trials]
        assert len(states) == 4, "pruned trials count towards the budget: every method gets exactly 4"
        assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
        pruned = states.count(optuna.trial.TrialState.PRUNED)
        tune = [t for t in trials if t["stage"] == "tune" and t["method"] == m and t["trial_id"] not in ref_ids]
        stopped = [t for t in tune if t["epochs"] < 4]
        assert len(tune) == 4 and len(stopped) == pruned  # one Ray trial per Optuna trial (one tuning seed)
        assert all(t["status"] == "completed" and (t["error"] or "").startswith("pruned:") for t in stopped)
        pruned_total += pruned
    assert pruned_total >= 1, "ASHA stopped nothing: the test would not see pruning"
    # the reference and the final trials always run to the end
    assert all(t["epochs"] == 4 for t in trials if t["trial_id"] in ref_ids or t["stage"] == "final")


@pytest.mark.slow
def test_ray_storage_is_where_an_interrupted_trial_resumes_from(tmp_path, capsys) -> None:
    from trainables import state
    from trainables.config import TrainConfig
    from trainables.trainer import Trainer

    spec_d = {"name": "rstore", "store": str(tmp_path / "store"),
              "datasets": [{"name": "multi_digits", "options": SMALL, "epochs": 2, "train": {"batch_size": 32}}],
              "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": 1}, "checkpoint_every": 1}
    spec = parse(spec_d)
    (job,) = final_jobs(spec, {})
    # an earlier run was killed after epoch 1: its rows are in the store, its checkpoint in the Ray storage
    trainer = Trainer(TrainConfig.from_dict(dict(job.config)))
    first = next(iter(trainer.epochs()))
    store = Store(spec.store)
    grp = group(spec.name, "final", job.trial_id, job.config)
    store.write_metrics(grp, [dict(r, epoch=1) for r in first.rows])
    store.write_trial(trial_record(grp, job.config, "running", epochs=1, started_at="earlier"))
    ray_storage = tmp_path / "shared-ray"
    ckpt = ray_storage / "rstore-20260101-000000-1" / job.trial_id / "checkpoint_000000"
    ckpt.mkdir(parents=True)
    state.save(trainer.state_dict(), ckpt / "trainer.pt")
    (ckpt / "epoch.json").write_text(json.dumps({"epoch": 1}))
    planted = sorted((r["split"], r["task"], r["metric"], r["value"]) for r in first.rows)

    path = tmp_path / "rstore.yaml"
    path.write_text(yaml.safe_dump(spec_d))
    assert main(["run", str(path), "--ray-storage", str(ray_storage), "--cpus", "2"]) == 0
    err = capsys.readouterr().err
    assert "resumed from its checkpoint at epoch 1" in err, err
    rows = store.trial_metrics(job.trial_id)
    assert sorted((r["split"], r["task"], r["metric"], r["value"]) for r in rows if r["epoch"] == 1) == planted
    assert {r["epoch"] for r in rows} == {1, 2}
    assert store.statuses()[job.trial_id] == "completed"
    assert not (spec.store / "ray").exists(), "the default Ray storage was used instead of --ray-storage"
    assert not [d for d in ray_storage.iterdir() if d.is_dir()]  # a complete study leaves no experiment folder
