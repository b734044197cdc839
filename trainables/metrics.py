"""Task metrics as streaming accumulators, with the exact definitions of the MTL literature.

Each accumulator takes batches (``update``) and returns ``{metric: value}``
(``compute``). Definitions follow LibMTL and the NYUv2/CityScapes papers:

* segmentation: mIoU from one global confusion matrix over the split
  (classes that never occur in prediction or target are left out of the
  mean); pixel accuracy = trace / sum; label ``-1`` is ignored;
* depth: absolute error ``sum |p - g| / n_valid`` and relative error
  ``sum |p - g| / g / n_valid`` over valid pixels (``g > 0``);
* surface normals: angle ``degrees(acos(clamp(<p/|p|, g>)))`` over valid
  pixels (non-zero ground truth): mean, median and the fraction within
  11.25, 22.5 and 30 degrees;
* classification: accuracy; binary F1 (positive class 1) and macro F1.

Fractions are stored in [0, 1] (tables may show percent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class MetricSpec:
    task: str
    name: str
    higher_is_better: bool


class Accumulator(Protocol):
    def update(self, pred: Tensor, target: Tensor) -> None: ...
    def compute(self) -> dict[str, float]: ...


class Accuracy:
    """Top-1 accuracy of logits ``[N, C]`` (or ``[N, C, ...]``) against integer targets (``-1`` ignored)."""

    directions = {"accuracy": True}

    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = target >= 0
        hit = (pred.argmax(1) == target) & valid
        self.correct += int(hit.sum())
        self.total += int(valid.sum())

    def compute(self) -> dict[str, float]:
        return {"accuracy": self.correct / self.total if self.total else float("nan")}


class F1:
    """Macro F1 over ``num_classes`` classes from a confusion matrix (binary: F1 of class 1 too)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.directions = {"accuracy": True, "f1": True}

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.cm += confusion_matrix(pred.argmax(1), target, self.num_classes)

    def compute(self) -> dict[str, float]:
        cm = self.cm.double()
        tp = cm.diag()
        precision = tp / cm.sum(0).clamp_min(1)
        recall = tp / cm.sum(1).clamp_min(1)
        f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros_like(tp))
        present = (cm.sum(0) + cm.sum(1)) > 0
        total = cm.sum()
        acc = float(tp.sum() / total) if total > 0 else float("nan")
        if self.num_classes == 2:
            return {"accuracy": acc, "f1": float(f1[1])}
        return {"accuracy": acc, "f1": float(f1[present].mean()) if present.any() else float("nan")}


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``[C, C]`` counts (rows: target, columns: prediction); targets outside ``[0, C)`` are ignored."""
    pred = pred.reshape(-1)
    target = target.reshape(-1)
    valid = (target >= 0) & (target < num_classes)
    idx = target[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


class Segmentation:
    """mIoU and pixel accuracy from a global confusion matrix (logits ``[N, C, H, W]``, labels ``[N, H, W]``)."""

    directions = {"miou": True, "pixel_acc": True}

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.cm += confusion_matrix(pred.argmax(1), target, self.num_classes)

    def compute(self) -> dict[str, float]:
        cm = self.cm.double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        present = union > 0
        miou = float((tp[present] / union[present]).mean()) if present.any() else float("nan")
        total = cm.sum()
        return {"miou": miou, "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan")}


class Depth:
    """Absolute and relative depth error over valid pixels (``target > 0``); ``pred`` and ``target`` ``[N, 1, H, W]``."""

    directions = {"abs_err": False, "rel_err": False}

    def __init__(self) -> None:
        self.abs = 0.0
        self.rel = 0.0
        self.n = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = target > 0
        diff = (pred - target).abs()[valid]
        self.abs += float(diff.double().sum())
        self.rel += float((diff / target[valid]).double().sum())
        self.n += int(valid.sum())

    def compute(self) -> dict[str, float]:
        if self.n == 0:
            return {"abs_err": float("nan"), "rel_err": float("nan")}
        return {"abs_err": self.abs / self.n, "rel_err": self.rel / self.n}


class Normal:
    """Angular error of surface normals ``[N, 3, H, W]`` over valid pixels (non-zero ground truth)."""

    directions = {"mean_angle": False, "median_angle": False, "within_11.25": True, "within_22.5": True, "within_30": True}

    def __init__(self) -> None:
        self.angles: list[Tensor] = []

    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = target.abs().sum(1) > 0
        p = torch.nn.functional.normalize(pred.float(), dim=1)
        cos = (p * target.float()).sum(1).clamp(-1.0, 1.0)
        self.angles.append(torch.rad2deg(torch.acos(cos[valid])).cpu())

    def compute(self) -> dict[str, float]:
        a = torch.cat(self.angles) if self.angles else torch.empty(0)
        if a.numel() == 0:
            return {k: float("nan") for k in self.directions}
        a = a.double()
        return {
            "mean_angle": float(a.mean()),
            "median_angle": float(a.median()) if a.numel() % 2 else float(a.sort().values[a.numel() // 2 - 1 : a.numel() // 2 + 1].mean()),
            "within_11.25": float((a < 11.25).double().mean()),
            "within_22.5": float((a < 22.5).double().mean()),
            "within_30": float((a < 30).double().mean()),
        }


class Regression:
    """Mean absolute error (optionally in original units via ``scale``)."""

    directions = {"mae": False}

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.sum = 0.0
        self.n = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.sum += float((pred.reshape(target.shape) - target).abs().double().sum()) * self.scale
        self.n += target.numel()

    def compute(self) -> dict[str, float]:
        return {"mae": self.sum / self.n if self.n else float("nan")}
