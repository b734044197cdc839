"""Metric definitions against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.metrics import F1, Accuracy, Depth, Normal, Segmentation, confusion_matrix


def onehot_logits(labels: torch.Tensor, c: int) -> torch.Tensor:
    """Logits whose argmax over dim 1 is ``labels``."""
    return torch.nn.functional.one_hot(labels.clamp_min(0), c).movedim(-1, 1).float()


def test_segmentation_uses_one_global_confusion_matrix_and_ignores_minus_one() -> None:
    target = torch.tensor([[[0, 0, 1, -1]], [[1, 2, 2, 2]]])  # [2, 1, 4]
    pred = torch.tensor([[[0, 1, 1, 2]], [[1, 2, 0, 2]]])
    acc = Segmentation(3)
    acc.update(onehot_logits(pred[:1], 3), target[:1])  # two batches accumulate into one matrix
    acc.update(onehot_logits(pred[1:], 3), target[1:])
    out = acc.compute()
    # valid pixels: 7; correct: (0,0) (1,1) (1,1) (2,2) (2,2) = 5
    assert out["pixel_acc"] == pytest.approx(5 / 7)
    # class 0: tp 1, fp 1 (pred 0 at a 2), fn 1 (a 0 predicted 1) -> 1/3
    # class 1: tp 2, fp 1, fn 0 -> 2/3 ; class 2: tp 2, fp 0, fn 1 -> 2/3
    assert out["miou"] == pytest.approx((1 / 3 + 2 / 3 + 2 / 3) / 3)


def test_confusion_matrix_rows_are_targets() -> None:
    cm = confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 1]), 2)
    assert cm.tolist() == [[0, 1], [0, 1]]


def test_depth_errors_over_valid_pixels_only() -> None:
    target = torch.tensor([[[[2.0, 0.0], [4.0, 1.0]]]])
    pred = torch.tensor([[[[1.0, 9.0], [5.0, 1.5]]]])
    d = Depth()
    d.update(pred, target)
    out = d.compute()
    assert out["abs_err"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert out["rel_err"] == pytest.approx((1 / 2 + 1 / 4 + 0.5 / 1) / 3)


def test_normal_angles_mean_median_and_within() -> None:
    deg = [0.0, 10.0, 20.0, 40.0]
    target = torch.zeros(1, 3, 1, 5)
    pred = torch.zeros(1, 3, 1, 5)
    for i, a in enumerate(deg):
        r = math.radians(a)
        target[0, :, 0, i] = torch.tensor([0.0, 0.0, 1.0])
        pred[0, :, 0, i] = torch.tensor([math.sin(r), 0.0, math.cos(r)]) * 3.0  # prediction is normalised
    pred[0, :, 0, 4] = torch.tensor([1.0, 0.0, 0.0])  # invalid pixel (zero target): ignored
    n = Normal()
    n.update(pred, target)
    out = n.compute()
    assert out["mean_angle"] == pytest.approx(sum(deg) / 4, abs=1e-3)
    assert out["median_angle"] == pytest.approx(15.0, abs=1e-3)
    assert out["within_11.25"] == pytest.approx(0.5)
    assert out["within_22.5"] == pytest.approx(0.75)
    assert out["within_30"] == pytest.approx(0.75)


def test_accuracy_and_f1() -> None:
    a = Accuracy()
    a.update(torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1]))
    assert a.compute()["accuracy"] == pytest.approx(2 / 3)
    f = F1(2)
    f.update(onehot_logits(torch.tensor([1, 1, 0, 0]), 2), torch.tensor([1, 0, 1, 0]))
    # class 1: tp 1, fp 1, fn 1 -> precision 1/2, recall 1/2, F1 1/2
    assert f.compute()["f1"] == pytest.approx(0.5)
