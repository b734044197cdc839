"""Shared code of the Office-31 / Office-Home domain benchmarks: one task per domain, each with its own images.

Layout (docs/data.md): ``{root}/{domain}_{train,val,test}.txt`` lists of
``relative/path label`` lines (paths relative to ``root``), 60/20/20 per
domain, made with ``python -m trainables.datasets.make_splits ROOT``.
Model as in Lin et al. (2022, Appendix) and LibMTL: ResNet-18 ->
Linear(512, 512) + BN + ReLU + Dropout(0.5) shared encoder, a linear head per
domain; images resized to 224 with ImageNet normalisation; accuracy.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from litmus.errors import DataError

from ..metrics import Accumulator, Accuracy
from ._images import ImageList, read_list
from ._resnet import GlobalPool, check_pretrained, resnet, resnet_stages
from ._paths import data_root
from ._weights import Weights, backbone_weights
from .base import Benchmark, Defaults, Option, Splits

SPLITS = ("train", "val", "test")


def list_file(root: Path, task: str, split: str) -> Path:
    """``{task}_{split}.txt``, or its spelling with spaces (``Real World_train.txt``) if only that exists."""
    f = root / f"{task}_{split}.txt"
    alt = root / f"{task.replace('_', ' ')}_{split}.txt"
    return alt if not f.is_file() and alt.is_file() else f


class OfficeBenchmark(Benchmark):
    multi_input = True
    num_classes: int = 0
    options = (
        Option("root", None, "folder holding the images and {domain}_{train,val,test}.txt (required)"),
        Option("image_size", 224, "images are resized to image_size x image_size"),
        Option("pretrained", True, "true: torchvision ImageNet weights (torch hub cache; see `litmus weights`); false"),
        Option("weights", None, "a local state-dict file of the backbone (offline; implies pretrained)"),
    )
    #: the training setting of both Office benchmarks (Lin et al., 2022, Table 8; LibMTL)
    defaults = Defaults(epochs=100, batch_size=128, lr=1e-4, weight_decay=1e-5, optimizer="adam")

    def check(self) -> None:
        o = self.opts
        if o["root"] is None:
            raise DataError(f"{self.name} needs the option root: the folder holding the images and split lists (see docs/data.md)")
        root = data_root(o["root"])
        if not root.is_dir():
            raise DataError(f"{self.name}: root {root} does not exist or is not a directory")
        for t in self.tasks:
            for s in SPLITS:
                f = list_file(root, t, s)
                if not f.is_file():
                    raise DataError(f"{self.name}: missing split list {f} (create the lists with "
                                    f"`python -m trainables.datasets.make_splits {root}`)")
        if not isinstance(o["image_size"], int) or o["image_size"] < 8:
            raise DataError(f"{self.name} option image_size must be an integer >= 8, got {o['image_size']!r}")
        check_pretrained(o["pretrained"], o["weights"], self.name, self.given)

    def load(self) -> Splits:
        root = data_root(self.opts["root"])
        out: dict[str, dict[str, ImageList]] = {s: {} for s in SPLITS}
        for t in self.tasks:
            for s in SPLITS:
                items = read_list(list_file(root, t, s), self.num_classes, root)
                out[s][t] = ImageList(root, items, t, self.opts["image_size"])
        return Splits(**out)

    def encoder_blocks(self) -> list[nn.Module]:
        o = self.opts
        stages = resnet_stages(resnet("resnet18", pretrained=o["pretrained"], weights=o["weights"], dataset=self.name))
        top = nn.Sequential(GlobalPool(), nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Dropout(0.5))
        return stages + [top]

    def pretrained_weights(self) -> list[Weights]:
        return backbone_weights(self.name, "resnet18", self.opts["pretrained"], self.opts["weights"])

    def head(self, task: str) -> nn.Module:
        return nn.Linear(512, self.num_classes)

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(pred, target)

    def accumulators(self) -> dict[str, Accumulator]:
        return {t: Accuracy() for t in self.tasks}
