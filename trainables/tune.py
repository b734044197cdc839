"""The Ray Tune trainable: one litmus trial as a plain function of its config.

``config = {"train": TrainConfig dict, "litmus": {...}}`` where ``litmus``
holds the trial's id and ``checkpoint_every``.

Each finished epoch is reported with :func:`ray.tune.report` (never
``ray.train.report``): the epoch's metric rows, mean task weights and a run
summary (scores, i.e. validation Delta-m for tuning, pruning and early stopping,
are computed by the driver from the rows: study/tuning.py). A checkpoint
(``trainer.state_dict()``: tensors and plain data
only, see trainables/state.py; loaded with ``weights_only=True``; a
Ray-internal file, never part of the results store) goes with every
``checkpoint_every``-th epoch, so a retried trial resumes where it stopped.
Divergence is a result, not an error: it is reported as ``status:
diverged`` and the function returns normally. Any other exception
propagates, so Ray records the failure and retries up to the study's limit.

This is the only module of ``trainables`` that imports Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from typing import Any

import torch
from ray import tune

from . import plugins, state
from .config import TrainConfig
from .trainer import Diverged, Trainer

CHECKPOINT_FILE = "trainer.pt"
EPOCH_FILE = "epoch.json"


def _cpus() -> int:
    try:
        res = tune.get_context().get_trial_resources()
        return max(1, int(res.required_resources.get("CPU", 1)))
    except Exception:  # noqa: BLE001 - outside a Tune session (direct call in tests): one thread
        return 1


def placement() -> dict[str, str]:
    """Where this trial runs: host name, Ray node id and the GPU ids Ray assigned (comma-separated)."""
    import ray

    if not ray.is_initialized():  # called directly, outside a Ray worker
        return {"host": socket.gethostname()}
    ctx = ray.get_runtime_context()
    return {"host": socket.gethostname(), "node": ctx.get_node_id(),
            "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids())}


def _report_with_checkpoint(report: dict[str, Any], trainer: Trainer) -> None:
    """Report with a checkpoint; Ray persists it to the run's storage before ``report`` returns."""
    path = tempfile.mkdtemp(prefix="litmus-ckpt-")
    try:
        state.save(trainer.state_dict(), os.path.join(path, CHECKPOINT_FILE))
        with open(os.path.join(path, EPOCH_FILE), "w") as f:  # lets a later run pick a checkpoint without unpickling
            json.dump({"epoch": trainer.epoch}, f)
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(path))
    finally:
        shutil.rmtree(path, ignore_errors=True)


def train_trial(config: dict[str, Any]) -> None:
    """Train one trial, reporting every epoch to Ray Tune."""
    meta = config.get("litmus", {})
    plugins.import_modules(meta.get("plugins") or [])  # shipped with the job (runtime env) or installed
    cfg = TrainConfig.from_dict(dict(config["train"]))
    if cfg.num_threads is None:
        cfg.num_threads = _cpus()
    torch.set_num_threads(cfg.num_threads)
    trainer = Trainer(cfg)
    ckpt = tune.get_checkpoint()
    # checkpoints hold tensors and plain data only (trainables.state): loaded with weights_only=True, so a
    # planted pickle is refused (CheckpointError: the trial fails loudly), never executed
    if ckpt is not None:
        with ckpt.as_directory() as d:  # written by this trial earlier in this run (a retry)
            trainer.load_state_dict(state.load(os.path.join(d, CHECKPOINT_FILE)))
    elif meta.get("resume_from") and os.path.exists(meta["resume_from"]):
        # the last checkpoint of this trial from an earlier, interrupted run of the study (the driver looks only
        # in this study's own experiment folders of its Ray storage: study.driver.latest_checkpoint)
        try:
            trainer.load_state_dict(state.load(meta["resume_from"]))
        except state.CheckpointError as err:
            raise state.CheckpointError(f"{err}; delete it, then rerun with --retry-failed") from None
    resumed_from = trainer.epoch
    every = int(meta.get("checkpoint_every", 1) or 0)
    host = placement()
    try:
        for res in trainer.epochs():
            report = {
                "litmus_id": meta.get("trial_id"),
                "epoch": res.epoch,
                "rows": res.rows,
                "weights": res.weights,
                "train_losses": res.train_losses,
                "epoch_seconds": res.seconds,
                "summary": {**trainer.stats.summary(), **host},
                "status": "running",
                "done_epochs": res.epoch >= trainer.cfg.epochs,
                "resumed_from": resumed_from,
            }
            if every and (res.epoch % every == 0) and res.epoch < trainer.cfg.epochs:
                _report_with_checkpoint(report, trainer)
            else:
                tune.report(report)
    except Diverged as err:
        tune.report({
            "litmus_id": meta.get("trial_id"),
            "epoch": trainer.epoch,
            "rows": [],
            "weights": None,
            "summary": {**trainer.stats.summary(), **host},
            "status": "diverged",
            "error": str(err),
            "done_epochs": True,
        })
