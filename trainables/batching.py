"""Batches of a trial's data: seeded shuffling, in-memory slicing, multi-input rounds.

Every random stream of a trial derives from its seed through a fixed offset, so the data
order, the random weights and the meta split are independent of one another and of the
model's initialisation (``torch.manual_seed(seed)``).
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from .datasets.base import TensorSplit

#: offsets that derive independent generators from the trial seed
DATA_STREAM, WEIGHT_STREAM = 1_000_003, 2_000_029
#: the held-out meta split of bi-level methods (MOML, Auto-Lambda) and its batch order
META_STREAM = 3_000_017

Batch = Any  #: ``(x, {task: y})``, or ``{task: (x, {task: y})}`` for a multi-input dataset


def subset(split: Any, idx: Tensor) -> Any:
    """Rows ``idx`` of a (single-input) split."""
    if isinstance(split, TensorSplit):
        return TensorSplit(split.inputs[idx], {k: v[idx] for k, v in split.targets.items()})
    return torch.utils.data.Subset(split, idx.tolist())


def batches(split: Any, batch_size: int, gen: torch.Generator | None, device: torch.device,
            num_workers: int = 0) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """Batches of a split; shuffled with ``gen`` (training) or in order (``gen=None``).

    In-memory splits are sliced directly; file-backed ones go through a DataLoader
    with ``num_workers`` decoding processes (the order still comes from ``gen``).
    """
    if isinstance(split, TensorSplit):
        n = len(split)
        order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
        for i in range(0, n, batch_size):
            x, y = split.batch(order[i : i + batch_size])
            yield x.to(device, non_blocking=True), {k: v.to(device, non_blocking=True) for k, v in y.items()}
        return
    loader = DataLoader(split, batch_size=batch_size, shuffle=gen is not None, generator=gen,
                        pin_memory=device.type == "cuda", num_workers=num_workers)
    for x, y in loader:
        yield x.to(device, non_blocking=True), {k: v.to(device, non_blocking=True) for k, v in y.items()}


def num_batches(split: Any, batch_size: int) -> int:
    return math.ceil(len(split) / batch_size)


def train_batches(train: Any, tasks: tuple[str, ...], multi_input: bool, batch_size: int, gen: torch.Generator,
                  device: torch.device, num_workers: int = 0) -> Iterator[Batch]:
    """One epoch of training batches. Multi-input: one batch per task per step, as many steps as the
    largest task's split needs; a smaller task's split restarts (reshuffled) when it runs out."""
    if not multi_input:
        yield from batches(train, batch_size, gen, device, num_workers)
        return
    steps = max(num_batches(s, batch_size) for s in train.values())
    iters = {t: batches(train[t], batch_size, gen, device, num_workers) for t in tasks}
    for _ in range(steps):
        batch = {}
        for t in tasks:
            try:
                batch[t] = next(iters[t])
            except StopIteration:
                iters[t] = batches(train[t], batch_size, gen, device, num_workers)
                batch[t] = next(iters[t])
        yield batch
