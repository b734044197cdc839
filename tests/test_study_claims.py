"""README/docs claims on real Ray (slow): ``litmus run --ray-storage`` as the place checkpoints of an
interrupted run are resumed from."""

from __future__ import annotations

import json

import pytest
import ray
import yaml

from study.cli import main
from study.plan import final_jobs
from study.records import group, trial_record
from study.run import run_study
from study.spec import parse
from study.store import Store

SMALL = {"n_train": 96, "n_val": 48, "n_test": 48, "width": 4}


@pytest.fixture(autouse=True)
def _ray_down():
    yield
    ray.shutdown()


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
