"""A trainer's resumable state: what a checkpoint holds, and restoring it.

The state is tensors and plain data only (methods through :mod:`.state`), so it loads with
``torch.load(weights_only=True)``; it is restored into a trainer freshly built from the same
config, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from . import state

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer


def capture(tr: "Trainer") -> dict[str, Any]:
    """Everything :func:`restore` needs to continue ``tr`` after its last finished epoch."""
    return {
        "epoch": tr.epoch,
        "global_step": tr.global_step,
        "model": tr.model.state_dict(),
        "optimizer": tr.optimizer.state_dict(),
        "scheduler": tr.scheduler.state_dict() if tr.scheduler is not None else None,
        "methods": [state.module_state(m, f"methods[{i}]") for i, m in enumerate(tr.pipeline.parts())],
        "data_gen": tr.data_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "step_times": list(tr.stats.step_times),
        "first_losses": tr.first_losses,  # the divergence rule's reference (trainables/divergence.py)
    }


def restore(tr: "Trainer", saved: dict[str, Any]) -> None:
    """Put ``saved`` (from :func:`capture`) into ``tr``, built from the same config."""
    tr.epoch = int(saved["epoch"])
    tr.global_step = int(saved["global_step"])
    tr.model.load_state_dict(saved["model"])
    parts = list(tr.pipeline.parts())
    if len(saved["methods"]) != len(parts):
        raise state.CheckpointError(f"checkpoint has {len(saved['methods'])} method parts, "
                                    f"{tr.cfg.method} has {len(parts)}")
    for i, (m, s) in enumerate(zip(parts, saved["methods"])):
        state.load_module_state(m, s, f"methods[{i}]", tr.device)
    tr.optimizer.load_state_dict(saved["optimizer"])
    if tr.scheduler is not None and saved["scheduler"] is not None:
        tr.scheduler.load_state_dict(saved["scheduler"])
    tr.data_gen.set_state(saved["data_gen"])
    torch.set_rng_state(saved["torch_rng"])
    tr.stats.step_times = list(saved.get("step_times", []))
    if saved.get("first_losses") is not None:
        tr.first_losses = saved["first_losses"].to(tr.device)
