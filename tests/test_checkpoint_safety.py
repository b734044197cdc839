"""Checkpoints are tensors and plain data: they load with weights_only=True, resume exactly, and a planted
pickle is refused without being executed (issue 10, item 1)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from trainables import state, weighting
from trainables.config import TrainConfig
from trainables.trainer import Trainer

SMALL = {"n_train": 64, "n_val": 16, "n_test": 16}
#: methods with state of every kind: parameters + own optimiser (famo, rotograd's lazy ones), generators (rlw,
#: pcgrad), EMAs/histories (dwa, gradvac), numpy arrays (cdtt), a solver (nash_mtl), a replay buffer (igb_v2),
#: every other method (auto_lambda's meta split among them) in the slow run
FAST = ["uw", "dwa", "famo", "rlw", "igb_v2", "ew+rotograd", "ew+nash_mtl", "ew+gradvac", "ew+cdtt",
        "ew+pcgrad"]
METHODS = FAST + [pytest.param(m, marks=pytest.mark.slow) for m in weighting.names("loss") if m not in FAST] \
    + [pytest.param(f"ew+{g}", marks=pytest.mark.slow) for g in weighting.names("grad") if f"ew+{g}" not in FAST]


def _cfg(method: str) -> TrainConfig:
    return TrainConfig(dataset="multi_digits", dataset_options=SMALL, epochs=2, batch_size=32, method=method, seed=5)


def _values(results) -> list[tuple]:
    return [(r.epoch, row["split"], row["task"], row["metric"], row["value"]) for r in results for row in r.rows]


class Planted:
    """Unpickling this runs os.system: what an attacker would put where a checkpoint is looked for."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump({"epoch": 1, "model": Planted(marker)}, f, protocol=2)


@pytest.fixture(scope="module")
def splits():
    from trainables.config import resolve

    return resolve(_cfg("ew"))[1].load()  # built once: the trainers below share the data


@pytest.mark.parametrize("method", METHODS)
def test_checkpoint_file_loads_weights_only_and_resumes_exactly(method: str, tmp_path: Path, splits) -> None:
    straight = _values(Trainer(_cfg(method), splits).epochs())
    first = Trainer(_cfg(method), splits)
    it = first.epochs()
    part = _values([next(it)])
    state.save(first.state_dict(), tmp_path / "trainer.pt")
    second = Trainer(_cfg(method), splits)
    second.load_state_dict(torch.load(tmp_path / "trainer.pt", weights_only=True))
    assert part + _values(second.epochs()) == straight


def test_planted_pickle_is_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    plant(tmp_path / "trainer.pt", marker)
    with pytest.raises(state.CheckpointError, match="refused checkpoint .*trainer.pt"):
        state.load(tmp_path / "trainer.pt")
    assert not marker.exists()


def test_unknown_attribute_types_fail_loudly() -> None:
    m = weighting.registry.build("ew", 2)
    m.anything = object()
    with pytest.raises(state.CheckpointError, match="anything"):
        state.module_state(m)


@pytest.mark.slow
def test_study_refuses_a_planted_checkpoint_in_its_ray_storage(tmp_path: Path) -> None:
    """A pickle planted where `litmus run` looks for an interrupted trial's checkpoint is not executed: the
    trial fails loudly with a message naming the file; a pickle in a foreign folder is not even looked at."""
    import json

    import ray

    from study.plan import final_jobs
    from study.records import group, now, trial_record
    from study.run import run_study
    from study.spec import parse
    from study.store import Store

    spec = parse({"name": "planted", "store": str(tmp_path / "store"), "retries": 1,
                  "datasets": [{"name": "multi_digits", "options": dict(SMALL, width=8), "epochs": 2}],
                  "methods": ["ew"], "tuning": {"methods": "none"}, "final": {"seeds": [0, 1]}})
    store = Store(spec.store)
    jobs = final_jobs(spec, {})
    markers = []
    for job, folder in zip(jobs, ("planted-20260101-000000-1", "elsewhere")):
        # an interrupted run left epoch 1 of the trial in the store ...
        grp = group(spec.name, "final", job.trial_id, job.config)
        store.write_metrics(grp, [{"split": "train", "epoch": 1, "task": "left", "metric": "loss", "value": 1.0,
                                   "higher_is_better": False}])
        store.write_trial(trial_record(grp, job.config, "running", epochs=1, started_at=now()))
        # ... and someone planted a pickle where its checkpoint is looked for
        ckpt = spec.store / "ray" / folder / job.trial_id / "checkpoint_000000"
        ckpt.mkdir(parents=True)
        (ckpt / "epoch.json").write_text(json.dumps({"epoch": 1}))
        markers.append(tmp_path / f"pwned-{folder}")
        plant(ckpt / "trainer.pt", markers[-1])
    try:
        res = run_study(spec, say=lambda m: None, num_cpus=1)
    finally:
        ray.shutdown()
    assert not any(m.exists() for m in markers)
    status = {t["trial_id"]: t for t in store.trials(spec.name)}
    bad, foreign = status[jobs[0].trial_id], status[jobs[1].trial_id]
    assert bad["status"] == "failed" and "refused checkpoint" in bad["error"] and "trainer.pt" in bad["error"]
    assert foreign["status"] == "completed" and foreign["epochs"] == 2  # the foreign folder is ignored
    assert res.counts == {"completed": 1, "failed": 1, "diverged": 0, "missing": 0}
