"""``digit_attributes``: CelebA-style many binary attributes of one bundled digit image.

Each image is one of scikit-learn's digits placed at a random offset on a
10x10 canvas with a little Gaussian noise. Seven binary tasks read
attributes of the digit's class (as CelebA's 40 attributes read a face):
``even``, ``greater_than_4``, ``prime``, ``closed_loop`` (0, 6, 8, 9),
``curved`` (0, 2, 3, 5, 6, 8, 9), ``multiple_of_3`` (0, 3, 6, 9),
``straight_only`` (1, 4, 7). Each task is a 2-way linear head with
cross-entropy, as in the random-weighting paper's CelebA setting; metric:
accuracy. Splits are disjoint by source image.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from litmus.errors import DataError

from ..metrics import Accumulator, Accuracy
from ._digits import source_pools
from .base import Benchmark, Defaults, Option, Splits, TensorSplit, conv_block, register, seeded

ATTRIBUTES: dict[str, frozenset[int]] = {
    "even": frozenset({0, 2, 4, 6, 8}),
    "greater_than_4": frozenset({5, 6, 7, 8, 9}),
    "prime": frozenset({2, 3, 5, 7}),
    "closed_loop": frozenset({0, 6, 8, 9}),
    "curved": frozenset({0, 2, 3, 5, 6, 8, 9}),
    "multiple_of_3": frozenset({0, 3, 6, 9}),
    "straight_only": frozenset({1, 4, 7}),
}
CANVAS = 10


def attribute_targets(labels: Tensor) -> dict[str, Tensor]:
    return {a: torch.tensor([int(int(y) in s) for y in labels], dtype=torch.int64) for a, s in ATTRIBUTES.items()}


@register
class DigitAttributes(Benchmark):
    name = "digit_attributes"
    description = "CelebA-style: 7 binary attributes of a shifted noisy bundled digit"
    tasks = tuple(ATTRIBUTES)
    bundled = True
    options = (
        Option("data_seed", 0, "seed of the source split, offsets and noise"),
        Option("n_train", 3000, ""),
        Option("n_val", 1000, ""),
        Option("n_test", 1000, ""),
        Option("noise", 0.1, "standard deviation of the pixel noise"),
        Option("width", 32, "channels of the encoder"),
    )
    defaults = Defaults(epochs=10, batch_size=128, lr=1e-3)

    def check(self) -> None:
        self.require_positive_ints("n_train", "n_val", "n_test", "width")
        if not isinstance(self.opts["noise"], (int, float)) or self.opts["noise"] < 0:
            raise DataError(f"digit_attributes option noise must be >= 0, got {self.opts['noise']!r}")

    def load(self) -> Splits:
        pools = source_pools(self.opts["data_seed"])
        out = {}
        for i, (split, (images, labels)) in enumerate(pools.items()):
            g = seeded(self.opts["data_seed"] * 1000 + 29 + i)
            n = self.opts[f"n_{split}"]
            pick = torch.randint(len(images), (n,), generator=g)
            dx = torch.randint(CANVAS - 7, (n,), generator=g)
            dy = torch.randint(CANVAS - 7, (n,), generator=g)
            canvas = torch.zeros(n, 1, CANVAS, CANVAS)
            for j in range(n):
                canvas[j, 0, dy[j] : dy[j] + 8, dx[j] : dx[j] + 8] = images[pick[j]]
            canvas += self.opts["noise"] * torch.randn(canvas.shape, generator=g)
            out[split] = TensorSplit(canvas, attribute_targets(labels[pick]))
        return Splits(**out)

    def encoder_blocks(self) -> list[nn.Module]:
        w = self.opts["width"]
        return [
            conv_block(1, w, pool=True),  # 10 -> 5
            conv_block(w, 2 * w, pool=False),
            nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(2 * w * 4, 4 * w), nn.ReLU(inplace=True)),
        ]

    def head(self, task: str) -> nn.Module:
        return nn.Linear(4 * self.opts["width"], 2)

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(pred, target)

    def accumulators(self) -> dict[str, Accumulator]:
        return {t: Accuracy() for t in self.tasks}
