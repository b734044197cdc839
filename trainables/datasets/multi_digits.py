"""``multi_digits``: a MultiMNIST-style benchmark from scikit-learn's bundled digits.

Two digits drawn from the same split's pool are composed on a 12x12 canvas,
one at the top-left and one shifted by 4 pixels to the bottom-right
(overlapping, pixel-wise max), as MultiMNIST (Sener & Koltun, NeurIPS 2018)
does with 28x28 MNIST digits. Tasks ``left`` and ``right``: 10-way
classification, accuracy. Splits are disjoint by source image; generation is
deterministic in ``data_seed``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..metrics import Accumulator, Accuracy
from ._digits import source_pools
from .base import Benchmark, Defaults, Option, Splits, TensorSplit, conv_block, register, seeded

CANVAS = 12
SHIFT = 4


def compose(left: Tensor, right: Tensor) -> Tensor:
    """``[N, 8, 8]`` x 2 -> ``[N, 1, 12, 12]`` overlapping composition."""
    n = len(left)
    canvas = torch.zeros(n, CANVAS, CANVAS)
    canvas[:, :8, :8] = left
    canvas[:, SHIFT : SHIFT + 8, SHIFT : SHIFT + 8] = torch.maximum(canvas[:, SHIFT : SHIFT + 8, SHIFT : SHIFT + 8], right)
    return canvas.unsqueeze(1)


@register
class MultiDigits(Benchmark):
    name = "multi_digits"
    description = "MultiMNIST-style overlapping digit pairs from scikit-learn's digits (bundled)"
    tasks = ("left", "right")
    bundled = True
    options = (
        Option("data_seed", 0, "seed of the source split and the composition"),
        Option("n_train", 4000, "composed training images"),
        Option("n_val", 1000, "composed validation images"),
        Option("n_test", 1000, "composed test images"),
        Option("width", 32, "channels of the encoder"),
    )
    defaults = Defaults(epochs=10, batch_size=128, lr=1e-3)

    def check(self) -> None:
        self.require_positive_ints("n_train", "n_val", "n_test", "width")

    def load(self) -> Splits:
        pools = source_pools(self.opts["data_seed"])
        out = {}
        for i, (split, (images, labels)) in enumerate(pools.items()):
            g = seeded(self.opts["data_seed"] * 1000 + 17 + i)
            n = self.opts[f"n_{split}"]
            a = torch.randint(len(images), (n,), generator=g)
            b = torch.randint(len(images), (n,), generator=g)
            out[split] = TensorSplit(compose(images[a], images[b]), {"left": labels[a], "right": labels[b]})
        return Splits(**out)

    def encoder_blocks(self) -> list[nn.Module]:
        w = self.opts["width"]
        return [
            conv_block(1, w, pool=True),  # 12 -> 6
            conv_block(w, 2 * w, pool=True),  # 6 -> 3
            nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 9, 4 * w), nn.ReLU(inplace=True)),
        ]

    def head(self, task: str) -> nn.Module:
        return nn.Linear(4 * self.opts["width"], 10)

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(pred, target)

    def accumulators(self) -> dict[str, Accumulator]:
        return {t: Accuracy() for t in self.tasks}
