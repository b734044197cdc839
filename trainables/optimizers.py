"""The trial's optimiser (the model plus the methods' own parameters) and learning-rate scheduler."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .config import TrainConfig
from .weighting import Method


def build_optimizer(cfg: TrainConfig, model: nn.Module, methods: Sequence[Method]) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD over the model, plus one group (no weight decay) per method with its own parameters
    at the method's ``lr`` (the model's when it has none).

    On CPU the model's group takes torch's multi-tensor (``foreach``) implementation, which torch picks
    by itself only on CUDA: one call per operation over all parameters instead of a Python loop of ~8
    calls per parameter; a method's group (one or a few tensors: UW's log-variances) keeps the loop,
    cheaper than foreach's fixed cost per group (~0.2 ms a step on multi_digits). On CPU the foreach
    operations run the single-tensor kernels tensor by tensor, with the same formulas in the same
    order, so the updates are the same bit for bit (tests/test_trainer.py); the step is ~1 % shorter
    on multi_digits (docs/benchmarks.md)."""
    params = list(model.parameters())
    cpu = all(p.device.type == "cpu" for p in params)
    foreach = True if params and cpu else None  # None: torch's choice (foreach on CUDA)
    groups: list[dict[str, Any]] = [{"params": params, "foreach": foreach}]
    for m in methods:
        ps = m.optimizer_params()
        if ps:
            groups.append({"params": ps, "lr": float(m.lr if m.lr is not None else cfg.lr), "weight_decay": 0.0,
                           "foreach": False if cpu and all(p.device.type == "cpu" for p in ps) else None})
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=foreach)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=foreach)
    return torch.optim.SGD(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum, foreach=foreach)


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return None
