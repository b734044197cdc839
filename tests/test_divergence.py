"""The divergence rule (trainables/divergence.py): an exploded or non-finite loss, or a non-finite metric, stops a
trial as diverged; normal training never trips it (issue 10, item 3)."""

from __future__ import annotations

import math

import pytest
import torch

from study.spec import SpecError, parse
from trainables import divergence
from trainables.config import TrainConfig
from trainables.trainer import Diverged, Trainer

OPTS = {"n_train": 300, "n_val": 60, "n_test": 60, "width": 8}


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(dataset="multi_digits", dataset_options=OPTS, epochs=kw.pop("epochs", 2), num_threads=1, **kw)


def test_lr_1e6_stops_as_diverged_on_the_step_the_loss_explodes() -> None:
    tr = Trainer(_cfg(lr=1e6))
    with pytest.raises(Diverged) as info:
        list(tr.epochs())
    err = info.value
    assert err.epoch == 1 and err.step == 2  # the first update already blew the loss up (finite: ~1e20)
    assert all(math.isfinite(v) and v > 100 * math.log(10) for v in err.losses.values())
    assert "above 100 x its first-step loss" in str(err)


def test_the_factor_is_the_threshold() -> None:
    first = torch.tensor([2.0, 0.0])
    assert divergence.step_reason(torch.tensor([199.0, 5.0]), first, 100.0) is None  # a 0 first loss: finiteness only
    assert "above 100" in divergence.step_reason(torch.tensor([201.0, 0.1]), first, 100.0)
    assert divergence.step_reason(torch.tensor([1e30, 1.0]), first, None) is None
    assert divergence.step_reason(torch.tensor([float("nan"), 1.0]), first, None) == "non-finite loss"
    assert divergence.rows_reason([{"split": "val", "task": "a", "metric": "acc", "value": 0.5}]) is None
    assert "non-finite val a rmse" in divergence.rows_reason(
        [{"split": "val", "task": "a", "metric": "rmse", "value": float("inf")}])


def test_the_trainer_keeps_the_limits_of_the_current_reference() -> None:
    """The trainer computes ``factor * first`` once per reference; a new reference (a restored
    checkpoint's) gets its own limits, and the limits equal step_reason's own computation."""
    tr = Trainer(_cfg())
    first = torch.tensor([2.0, 0.0])
    tr.first_losses = first
    tr._check(torch.tensor([199.0, 5.0]), 1, 2)
    assert tr._limits == (first, [200.0, math.inf]) == (first, divergence.step_limits(first, 100.0))
    with pytest.raises(Diverged, match="above 100"):
        tr._check(torch.tensor([201.0, 0.1]), 1, 3)
    tr.first_losses = torch.tensor([3.0, 1.0])  # as checkpoint.restore sets it
    tr._check(torch.tensor([299.0, 99.0]), 1, 4)
    with pytest.raises(Diverged, match="above 100"):
        tr._check(torch.tensor([299.0, 101.0]), 1, 5)


def test_normal_training_is_not_diverged_and_resume_keeps_the_reference() -> None:
    tr = Trainer(_cfg(epochs=3))
    it = tr.epochs()
    next(it)
    state = tr.state_dict()
    again = Trainer(_cfg(epochs=3))
    again.load_state_dict(state)
    assert torch.equal(again.first_losses, tr.first_losses)
    assert [r.epoch for r in again.epochs()] == [2, 3]


def test_a_non_finite_metric_is_divergence(monkeypatch) -> None:
    tr = Trainer(_cfg(epochs=1))
    real = tr.evaluate

    def evaluate(split):
        rows = real(split)
        rows[-1]["value"] = float("nan")
        return rows

    monkeypatch.setattr(tr, "evaluate", evaluate)
    with pytest.raises(Diverged, match=r"non-finite val right accuracy \(nan\) at epoch 1"):
        list(tr.epochs())


@pytest.mark.parametrize("bad", [0.5, 1, "big", True, float("inf")])
def test_spec_validates_the_factor(bad) -> None:
    with pytest.raises(SpecError, match=r"datasets\[0\].*divergence_factor must be a number > 1"):
        parse({"name": "x", "datasets": [{"name": "multi_digits", "options": OPTS, "train": {"divergence_factor": bad}}],
               "methods": ["ew"], "tuning": {"methods": "none"}})


def test_a_string_batch_size_is_one_line_not_a_type_error() -> None:
    with pytest.raises(SpecError, match=r"datasets\[0\].*batch_size must be a positive integer, got 'big'"):
        parse({"name": "x", "datasets": [{"name": "multi_digits", "options": OPTS, "train": {"batch_size": "big"}}],
               "methods": ["ew"], "tuning": {"methods": "none"}})


@pytest.mark.slow
def test_a_study_at_lr_1e6_ends_diverged_prints_every_cells_counts_and_exits_1(tmp_path, capsys):
    import ray
    import yaml

    from study.cli import main

    spec = {"name": "blowup", "store": str(tmp_path / "store"),
            "datasets": [{"name": "multi_digits", "options": OPTS, "epochs": 2, "train": {"lr": 1e6}}],
            "methods": ["ew", {"name": "rlw", "distributions": ["normal", "uniform"]}],
            "tuning": {"methods": "none"}, "final": {"seeds": 2}}
    path = tmp_path / "blowup.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        code = main(["run", str(path), "--cpus", "2"])
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert code == 1
    assert "final stage: 0 completed, 0 failed, 6 diverged, 0 missing" in out
    for cell in ("multi_digits/hps/ew ", "multi_digits/hps/rlw[normal]", "multi_digits/hps/rlw[uniform]"):
        line = next(l for l in out.splitlines() if cell in l)
        assert line.split()[-5:] == ["0", "0", "0", "2", "0"], line  # done run fail div miss
    from study.store import Store
    trials = Store(tmp_path / "store").trials("blowup")
    assert len(trials) == 6 and all(t["status"] == "diverged" and "first-step loss" in t["error"] for t in trials)
