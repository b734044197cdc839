"""``scenes``: an NYUv2-style dense-prediction benchmark generated procedurally (no download).

Each 3x32x32 image shows a slanted floor and one to three objects: boxes
(fronto-parallel planes), balls (hemispheres) and wedges (tilted planes),
shaded by their surface normal under a fixed light. Per pixel it has a
4-class segmentation label (background, box, ball, wedge), a depth and a
unit surface normal. A random rectangle of each image is invalid (label -1,
depth 0, normal 0), like NYUv2's missing depth, so the metrics' valid-pixel
rules are exercised. Tasks, losses and metrics are those of NYUv2
(``trainables/metrics.py``): cross-entropy (ignore -1), L1 on valid depth,
``1 - cosine`` on valid normals; mIoU, pixel accuracy, depth abs/rel error,
normal angle mean/median and fractions within 11.25/22.5/30 degrees.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from litmus.errors import DataError

from ..metrics import Accumulator, Depth, Normal, Segmentation
from .base import Benchmark, Defaults, Option, Splits, TensorSplit, conv_block, register, seeded

NUM_CLASSES = 4
ALBEDO = torch.tensor([[0.55, 0.50, 0.45], [0.85, 0.25, 0.20], [0.20, 0.75, 0.30], [0.25, 0.35, 0.90]])
LIGHT = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8]), dim=0)


def render(n: int, size: int, g: torch.Generator) -> TensorSplit:
    """Generate ``n`` scenes of ``size`` x ``size`` pixels deterministically from ``g``."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    images = torch.empty(n, 3, size, size)
    labels = torch.empty(n, size, size, dtype=torch.int64)
    depths = torch.empty(n, 1, size, size)
    normals = torch.empty(n, 3, size, size)
    floor_n = torch.nn.functional.normalize(torch.tensor([0.0, -0.6, 0.8]), dim=0)
    for i in range(n):
        lab = torch.zeros(size, size, dtype=torch.int64)
        dep = 3.0 + 2.0 * (1.0 - ys / (size - 1))
        nor = floor_n.view(3, 1, 1).expand(3, size, size).clone()
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            cls = int(torch.randint(1, NUM_CLASSES, (1,), generator=g))
            cx, cy = (torch.rand(2, generator=g) * (size - 8) + 4).tolist()
            r = float(torch.rand(1, generator=g) * size / 6 + size / 10)
            d0 = float(torch.rand(1, generator=g) * 1.5 + 1.0)
            if cls == 1:
                mask = ((xs - cx).abs() <= r) & ((ys - cy).abs() <= r * 0.8)
                nn_ = torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1).expand(3, size, size)
                dd = torch.full((size, size), d0)
            elif cls == 2:
                u, v = (xs - cx) / r, (ys - cy) / r
                rho2 = u * u + v * v
                mask = rho2 < 1.0
                w = torch.sqrt((1.0 - rho2).clamp_min(0.0))
                nn_ = torch.stack([u, v, w])
                dd = d0 - 0.3 * w
            else:
                mask = (ys - cy <= r) & ((xs - cx).abs() <= (ys - cy + r) / 2) & (ys - cy >= -r)
                sx = 1.0 if float(torch.rand(1, generator=g)) < 0.5 else -1.0
                nn_ = torch.nn.functional.normalize(torch.tensor([0.5 * sx, -0.3, 0.8]), dim=0).view(3, 1, 1).expand(3, size, size)
                dd = d0 + 0.02 * sx * (xs - cx)
            lab = torch.where(mask, torch.tensor(cls), lab)
            dep = torch.where(mask, dd, dep)
            nor = torch.where(mask.unsqueeze(0), nn_, nor)
        nor = torch.nn.functional.normalize(nor, dim=0)
        shade = 0.3 + 0.7 * (nor * LIGHT.view(3, 1, 1)).sum(0).clamp_min(0.0)
        img = ALBEDO[lab].permute(2, 0, 1) * shade
        img = img + 0.05 * torch.randn(img.shape, generator=g)
        # an invalid rectangle (missing sensor data)
        hx, hy = torch.randint(0, size - 6, (2,), generator=g).tolist()
        hw, hh = torch.randint(2, 7, (2,), generator=g).tolist()
        lab[hy : hy + hh, hx : hx + hw] = -1
        dep[hy : hy + hh, hx : hx + hw] = 0.0
        nor[:, hy : hy + hh, hx : hx + hw] = 0.0
        images[i], labels[i], depths[i, 0], normals[i] = img, lab, dep, nor
    return TensorSplit(images, {"segmentation": labels, "depth": depths, "normal": normals})


def segmentation_loss(pred: Tensor, target: Tensor) -> Tensor:
    return nn.functional.cross_entropy(pred, target, ignore_index=-1)


def depth_loss(pred: Tensor, target: Tensor) -> Tensor:
    valid = target > 0
    return (pred - target).abs()[valid].mean() if valid.any() else pred.sum() * 0.0


def normal_loss(pred: Tensor, target: Tensor) -> Tensor:
    valid = target.abs().sum(1) > 0
    cos = (nn.functional.normalize(pred, dim=1) * target).sum(1)
    return 1.0 - cos[valid].mean() if valid.any() else pred.sum() * 0.0


DENSE_LOSSES = {"segmentation": segmentation_loss, "depth": depth_loss, "normal": normal_loss}


@register
class Scenes(Benchmark):
    name = "scenes"
    description = "NYUv2-style segmentation, depth and surface normals on procedural 32x32 scenes (bundled)"
    tasks = ("segmentation", "depth", "normal")
    bundled = True
    options = (
        Option("data_seed", 0, "seed of the generator"),
        Option("n_train", 400, ""),
        Option("n_val", 100, ""),
        Option("n_test", 100, ""),
        Option("size", 32, "image side in pixels (even)"),
        Option("width", 16, "channels of the encoder"),
    )
    defaults = Defaults(epochs=10, batch_size=32, lr=1e-3)

    def check(self) -> None:
        self.require_positive_ints("n_train", "n_val", "n_test", "width", "size")
        if self.opts["size"] % 2 or self.opts["size"] < 16:
            raise DataError(f"scenes option size must be even and >= 16, got {self.opts['size']}")

    def load(self) -> Splits:
        out = {}
        for i, split in enumerate(("train", "val", "test")):
            out[split] = render(self.opts[f"n_{split}"], self.opts["size"], seeded(self.opts["data_seed"] * 1000 + 43 + i))
        return Splits(**out)

    def encoder_blocks(self) -> list[nn.Module]:
        w = self.opts["width"]
        return [conv_block(3, w), conv_block(w, 2 * w, pool=True), conv_block(2 * w, 2 * w)]

    def head(self, task: str) -> nn.Module:
        w = self.opts["width"]
        out = {"segmentation": NUM_CLASSES, "depth": 1, "normal": 3}[task]
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(2 * w, w, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, out, 1),
        )

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return DENSE_LOSSES[task](pred, target)

    def accumulators(self) -> dict[str, Accumulator]:
        return {"segmentation": Segmentation(NUM_CLASSES), "depth": Depth(), "normal": Normal()}


