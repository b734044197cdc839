"""Metric rows of a split: the per-(split, task, metric) records every epoch produces."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from .batching import batches
from .datasets.base import Benchmark


def metric_rows(split: str, tasks: tuple[str, ...], accs: dict[str, Any], losses: Tensor) -> list[dict[str, Any]]:
    """One row per (task, metric) of ``split``: the mean loss, then the accumulators' metrics."""
    rows = []
    for i, t in enumerate(tasks):
        rows.append({"split": split, "task": t, "metric": "loss", "value": float(losses[i]), "higher_is_better": False})
        for metric, value in accs[t].compute().items():
            rows.append({"split": split, "task": t, "metric": metric, "value": float(value),
                         "higher_is_better": bool(accs[t].directions[metric])})
    return rows


@torch.no_grad()
def evaluate(model: nn.Module, bench: Benchmark, tasks: tuple[str, ...], split: Any, split_name: str,
             predict: Callable[[Tensor], dict[str, Tensor]], batch_size: int, device: torch.device,
             num_workers: int = 0, amp: bool = False) -> list[dict[str, Any]]:
    """Metric rows of ``split`` (in order, the model in eval mode); ``predict`` maps inputs to outputs."""
    model.eval()
    accs = bench.accumulators()
    loss_sum = torch.zeros(len(tasks), dtype=torch.float64)
    count = torch.zeros(len(tasks), dtype=torch.float64)
    if bench.multi_input:
        for i, t in enumerate(tasks):
            for x, y in batches(split[t], batch_size, None, device, num_workers):
                out = model(x, (t,))[t].float()
                loss_sum[i] += float(bench.loss(t, out, y[t])) * len(x)
                count[i] += len(x)
                accs[t].update(out, y[t])
    else:
        for x, y in batches(split, batch_size, None, device, num_workers):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = predict(x)
            for i, t in enumerate(tasks):
                o = out[t].float()
                loss_sum[i] += float(bench.loss(t, o, y[t])) * len(x)
                count[i] += len(x)
                accs[t].update(o, y[t])
    return metric_rows(split_name, tasks, accs, (loss_sum / count.clamp_min(1)).float())
