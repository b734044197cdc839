"""The Ray trainable (trainables/tune.py) run for real on bundled data with Ray Tune's session functions
replaced by recorders (mutation testing, docs/testing.md): what each epoch reports, when a checkpoint goes
with it and what it holds, that a retried or resumed trial continues exactly where it stopped, and that a
diverged trial is reported as a result, not an error."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import trainables.tune as tt
from trainables import state
from trainables.config import TrainConfig
from trainables.trainer import Diverged, Trainer

OPTIONS = {"n_train": 64, "n_val": 32, "n_test": 32, "width": 8}


def _config(epochs: int = 2, num_threads: int | None = 1) -> dict:
    cfg = TrainConfig(dataset="multi_digits", dataset_options=OPTIONS, epochs=epochs, batch_size=32, seed=0,
                      num_threads=num_threads, device="cpu", method="uw")
    return cfg.to_dict()


class _Tune:
    """Records ``tune.report`` calls; copies each checkpoint's files (the trainable deletes its folder)."""

    def __init__(self, tmp: Path, checkpoint: Path | None = None, cpus: float | None = None) -> None:
        self.tmp, self.reports, self.saved = tmp, [], {}
        self.checkpoint = checkpoint
        self.cpus = cpus
        self.Checkpoint = SimpleNamespace(from_directory=lambda path: SimpleNamespace(path=path))

    def report(self, metrics: dict, checkpoint=None) -> None:
        self.reports.append(metrics)
        if checkpoint is not None:
            dest = self.tmp / f"saved-{metrics['epoch']}"
            shutil.copytree(checkpoint.path, dest)
            self.saved[metrics["epoch"]] = dest

    def get_checkpoint(self):
        if self.checkpoint is None:
            return None
        d = self.checkpoint

        @contextlib.contextmanager
        def as_directory():
            yield str(d)

        return SimpleNamespace(as_directory=as_directory)

    def get_context(self):
        if self.cpus is None:
            raise RuntimeError("not in a Tune session")
        return SimpleNamespace(get_trial_resources=lambda: SimpleNamespace(required_resources={"CPU": self.cpus}))


@pytest.fixture
def threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _run(monkeypatch, tmp_path: Path, meta: dict, epochs: int = 2, **kw) -> _Tune:
    fake = _Tune(tmp_path, **kw)
    monkeypatch.setattr(tt, "tune", fake)
    tt.train_trial({"train": _config(epochs), "litmus": meta})
    return fake


def _values(report: dict) -> dict:
    return {(r["split"], r["task"], r["metric"]): r["value"] for r in report["rows"]}


def test_every_epoch_is_reported_with_its_rows_and_a_checkpoint_every_k_epochs(monkeypatch, tmp_path, threads):
    fake = _run(monkeypatch, tmp_path, {"trial_id": "t1", "checkpoint_every": 1}, epochs=3)
    assert [r["epoch"] for r in fake.reports] == [1, 2, 3]
    assert [r["done_epochs"] for r in fake.reports] == [False, False, True]
    for r in fake.reports:
        assert r["litmus_id"] == "t1" and r["status"] == "running" and r["resumed_from"] == 0
        assert {x["split"] for x in r["rows"]} == {"train", "val", "test"}
        assert set(r["weights"]) == {"left", "right"} and set(r["train_losses"]) == {"left", "right"}
        assert r["epoch_seconds"] > 0
        assert r["summary"]["host"] == socket.gethostname() and "wall_time_s" in r["summary"]
    assert sorted(fake.saved) == [1, 2]  # never with the last epoch: the trial is over
    for e, d in fake.saved.items():
        assert json.loads((d / tt.EPOCH_FILE).read_text()) == {"epoch": e}
        assert state.load(d / tt.CHECKPOINT_FILE)["epoch"] == e
    every2 = _run(monkeypatch, tmp_path / "b", {"trial_id": "t1", "checkpoint_every": 2}, epochs=3)
    assert sorted(every2.saved) == [2]
    none = _run(monkeypatch, tmp_path / "c", {"trial_id": "t1", "checkpoint_every": 0}, epochs=2)
    assert none.saved == {} and [r["epoch"] for r in none.reports] == [1, 2]
    default = _run(monkeypatch, tmp_path / "d", {"trial_id": "t1"}, epochs=2)
    assert sorted(default.saved) == [1]  # checkpoint_every defaults to 1


def test_the_checkpoint_folder_is_removed_after_the_report(monkeypatch, tmp_path, threads):
    made: list[str] = []
    real = tt.tempfile.mkdtemp
    monkeypatch.setattr(tt.tempfile, "mkdtemp", lambda **kw: made.append(real(**kw)) or made[-1])
    _run(monkeypatch, tmp_path, {"trial_id": "t1", "checkpoint_every": 1}, epochs=2)
    assert len(made) == 1 and Path(made[0]).name.startswith("litmus-ckpt-") and not os.path.exists(made[0])


def test_a_retried_trial_continues_from_its_checkpoint_exactly(monkeypatch, tmp_path, threads):
    full = _run(monkeypatch, tmp_path / "full", {"trial_id": "t1", "checkpoint_every": 1}, epochs=2)
    retry = _run(monkeypatch, tmp_path / "retry", {"trial_id": "t1", "checkpoint_every": 1}, epochs=2,
                 checkpoint=full.saved[1])
    assert [r["epoch"] for r in retry.reports] == [2]
    assert retry.reports[0]["resumed_from"] == 1
    assert _values(retry.reports[0]) == _values(full.reports[1])
    # a checkpoint of an earlier, interrupted run of the study (the driver's resume_from)
    resumed = _run(monkeypatch, tmp_path / "resumed", {"trial_id": "t1", "checkpoint_every": 1,
                                                       "resume_from": str(full.saved[1] / tt.CHECKPOINT_FILE)},
                   epochs=2)
    assert [r["epoch"] for r in resumed.reports] == [2] and resumed.reports[0]["resumed_from"] == 1
    assert _values(resumed.reports[0]) == _values(full.reports[1])
    # Tune's own checkpoint (a retry in this run) wins over resume_from
    both = _run(monkeypatch, tmp_path / "both", {"trial_id": "t1", "resume_from": str(tmp_path / "absent.pt")},
                epochs=2, checkpoint=full.saved[1])
    assert [r["epoch"] for r in both.reports] == [2]
    gone = _run(monkeypatch, tmp_path / "gone", {"trial_id": "t1", "resume_from": str(tmp_path / "absent.pt")},
                epochs=2)
    assert [r["epoch"] for r in gone.reports] == [1, 2] and gone.reports[0]["resumed_from"] == 0
    assert _values(gone.reports[1]) == _values(full.reports[1])


def test_a_refused_checkpoint_fails_the_trial_loudly(monkeypatch, tmp_path, threads):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception) as err:
        _run(monkeypatch, tmp_path, {"trial_id": "t1", "resume_from": str(bad)}, epochs=1)
    assert str(bad) in str(err.value)
    import pickle

    class Planted:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(bad, "wb") as f:
        pickle.dump({"epoch": 1, "x": Planted()}, f, protocol=2)
    with pytest.raises(state.CheckpointError, match="delete it, then rerun with --retry-failed"):
        _run(monkeypatch, tmp_path, {"trial_id": "t1", "resume_from": str(bad)}, epochs=1)


def test_divergence_is_reported_as_a_result(monkeypatch, tmp_path, threads):
    class Diverging(Trainer):
        def epochs(self):
            for res in super().epochs():
                yield res
                raise Diverged(self.epoch + 1, 3, {"left": float("nan")})

    monkeypatch.setattr(tt, "Trainer", Diverging)
    fake = _run(monkeypatch, tmp_path, {"trial_id": "t9", "checkpoint_every": 0}, epochs=3)
    assert [r["status"] for r in fake.reports] == ["running", "diverged"]
    last = fake.reports[-1]
    assert (last["litmus_id"], last["epoch"], last["rows"], last["weights"], last["done_epochs"]) == ("t9", 1, [], None,
                                                                                                     True)
    assert last["error"].startswith("non-finite loss at epoch 2, step 3")
    assert last["summary"]["host"] == socket.gethostname()


def test_an_error_propagates(monkeypatch, tmp_path, threads):
    class Failing(Trainer):
        def epochs(self):
            raise ValueError("data file unreadable")
            yield  # pragma: no cover

    monkeypatch.setattr(tt, "Trainer", Failing)
    with pytest.raises(ValueError, match="data file unreadable"):
        _run(monkeypatch, tmp_path, {"trial_id": "t1"}, epochs=1)


def test_threads_follow_the_trials_cpus(monkeypatch, tmp_path, threads):
    fake = _Tune(tmp_path, cpus=3.0)
    monkeypatch.setattr(tt, "tune", fake)
    assert tt._cpus() == 3
    fake.cpus = 0.5
    assert tt._cpus() == 1  # a fractional CPU: one thread
    fake.cpus = None
    assert tt._cpus() == 1  # outside a session
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(tt.torch, "set_num_threads", lambda n: seen.append(n) or real(n))
    fake.cpus = 2.0
    tt.train_trial({"train": _config(1, None), "litmus": {"trial_id": "t1", "checkpoint_every": 0}})
    assert seen and set(seen) == {2}  # the trainable's and the trainer's calls
    seen.clear()
    tt.train_trial({"train": _config(1, 1), "litmus": {"trial_id": "t1", "checkpoint_every": 0}})
    assert seen and set(seen) == {1}


def test_placement_outside_ray_is_the_host(monkeypatch):
    assert tt.placement() == {"host": socket.gethostname()}


def test_worker_plugins_are_imported(monkeypatch, tmp_path, threads):
    seen = []
    monkeypatch.setattr(tt.plugins, "import_modules", lambda mods: seen.append(list(mods)))
    _run(monkeypatch, tmp_path, {"trial_id": "t1", "checkpoint_every": 0, "plugins": ["a.b"]}, epochs=1)
    _run(monkeypatch, tmp_path, {"trial_id": "t1", "checkpoint_every": 0, "plugins": None}, epochs=1)
    assert seen == [["a.b"], []]


def test_placement_inside_ray_names_the_node_and_the_assigned_gpus(monkeypatch):
    """In a Ray worker (Ray's functions replaced by stand-ins: no cluster in the fast suite): host, node id and the
    GPU ids Ray assigned, comma-separated; none assigned gives an empty string."""
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "node-7"))
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0, 3])
    assert tt.placement() == {"host": socket.gethostname(), "node": "node-7", "gpu_ids": "0,3"}
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    assert tt.placement()["gpu_ids"] == ""
