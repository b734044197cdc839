"""The meta split of bi-level loss weightings (MOML, Auto-Lambda) and their lookahead step.

The meta data are held out of the TRAINING split (a seeded permutation); validation and test
data are never touched, and the model never trains on the held-out part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError

from .batching import META_STREAM, Batch, batches, subset
from .datasets.base import Benchmark, Splits
from .weighting import LossWeighting


@dataclass
class MetaSplit:
    """The held-out part of the training split and an endless, seeded stream of its batches."""

    split: Any
    #: rows of the original training split held out (``indices``) and kept for training
    indices: Tensor
    train_indices: Tensor
    batch_size: int
    device: torch.device
    gen: torch.Generator
    _stream: Iterator[Any] | None = field(default=None, repr=False)

    @classmethod
    def carve(cls, splits: Splits, fraction: float, seed: int, batch_size: int,
              device: torch.device) -> tuple["MetaSplit", Splits]:
        """Hold out ``fraction`` of ``splits.train``; return the meta split and the splits left to train on."""
        train = splits.train
        n = len(train)
        k = max(1, round(n * float(fraction)))
        if k >= n:
            raise ConfigError(f"meta_fraction {fraction} leaves no training data ({n} examples)")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + META_STREAM))
        meta_idx, train_idx = perm[:k].sort().values, perm[k:].sort().values
        meta = cls(subset(train, meta_idx), meta_idx, train_idx, batch_size, device,
                   torch.Generator().manual_seed(seed + META_STREAM + 1))
        return meta, Splits(train=subset(train, train_idx), val=splits.val, test=splits.test)

    def next_batch(self) -> Any:
        for _ in range(2):
            if self._stream is None:
                self._stream = batches(self.split, self.batch_size, self.gen, self.device)
            try:
                return next(self._stream)
            except StopIteration:
                self._stream = None
        raise RuntimeError("the meta split produced no batch")


def meta_step(model: nn.Module, bench: Benchmark, tasks: tuple[str, ...], method: LossWeighting,
              batch: Batch, meta_batch: Batch) -> None:
    """Let a bi-level loss weighting update its weights from a one-step lookahead (functional_call)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.clone() for n, b in model.named_buffers()}  # BN statistics of the lookahead stay local

    def loss_fn(ps: dict[str, Tensor], b: Any) -> Tensor:
        x, y = b
        out = torch.func.functional_call(model, {**ps, **buffers}, (x,))
        return torch.stack([bench.loss(t, out[t], y[t]) for t in tasks]).float()

    method.meta_step(loss_fn, params, batch, meta_batch)
