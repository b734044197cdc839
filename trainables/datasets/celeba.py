"""``celeba``: CelebA (Liu et al., ICCV 2015), 40 binary face attributes as 40 tasks.

Standard release layout: ``{root}/img_align_celeba/*.jpg``,
``{root}/list_attr_celeba.txt`` (count line, attribute-name line, then
``file v1 .. v40`` with +1/-1) and ``{root}/list_eval_partition.txt``
(``file 0|1|2`` = train/val/test: 162,770 / 19,867 / 19,962). Setting of Lin et
al. (2022, Table 7): ResNet-18 shared encoder (global average pooled), a 2-way
linear head per attribute, cross-entropy, images resized (64 here by default),
Adam, batch 512; accuracy per attribute.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from litmus.errors import DataError

from ..metrics import Accumulator, Accuracy
from ._images import load_image, transform
from ._resnet import GlobalPool, check_pretrained, resnet, resnet_stages
from ._paths import data_root
from ._weights import Weights, backbone_weights
from .base import Benchmark, Defaults, Option, Splits, register

ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)
FILES = ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
SPLIT_CODES = {"0": "train", "1": "val", "2": "test"}


def read_attributes(path: Path) -> dict[str, list[int]]:
    """``{file: [40 values in {0, 1}]}`` from ``list_attr_celeba.txt`` (validated)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and an attribute-name line")
    names = tuple(lines[1].split())
    if names != ATTRIBUTES:
        raise DataError(f"{path}, line 2: expected the 40 CelebA attribute names ({ATTRIBUTES[0]} ... {ATTRIBUTES[-1]}), "
                        f"got {len(names)} names starting {names[:2]}")
    out: dict[str, list[int]] = {}
    for n, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 41:
            raise DataError(f"{path}, line {n}: expected a file name and 40 values, got {len(parts)} fields")
        vals = parts[1:]
        if any(v not in ("1", "-1") for v in vals):
            bad = next(v for v in vals if v not in ("1", "-1"))
            raise DataError(f"{path}, line {n}: attribute value {bad!r}, expected 1 or -1")
        out[parts[0]] = [1 if v == "1" else 0 for v in vals]
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}, line 1: expected the number of images, got {lines[0]!r}") from None
    if count != len(out):
        raise DataError(f"{path}: line 1 says {count} images, the file lists {len(out)}")
    return out


def read_partition(path: Path) -> dict[str, str]:
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in SPLIT_CODES:
            raise DataError(f"{path}, line {n}: expected 'file 0|1|2', got {line!r}")
        out[parts[0]] = SPLIT_CODES[parts[1]]
    return out


class CelebASplit(Dataset):
    def __init__(self, folder: Path, files: list[str], labels: Tensor, size: int) -> None:
        self.folder, self.files, self.labels = folder, files, labels
        self.tf = transform(size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, k: int) -> tuple[Tensor, dict[str, Tensor]]:
        y = self.labels[k]
        return self.tf(load_image(self.folder / self.files[k])), {a: y[i] for i, a in enumerate(ATTRIBUTES)}


@register
class CelebA(Benchmark):
    name = "celeba"
    description = "CelebA: 40 binary face attributes (standard release layout; needs root)"
    tasks = ATTRIBUTES
    options = (
        Option("root", None, "folder with img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt (required)"),
        Option("image_size", 64, "images are resized to image_size x image_size"),
        Option("pretrained", False, "true: torchvision ImageNet weights (torch hub cache; see `litmus weights`)"),
        Option("weights", None, "a local state-dict file of the backbone (offline; implies pretrained)"),
    )
    defaults = Defaults(epochs=100, batch_size=512, lr=1e-3, optimizer="adam")

    def check(self) -> None:
        o = self.opts
        if o["root"] is None:
            raise DataError("celeba needs the option root: the folder of the standard release (see docs/data.md)")
        root = data_root(o["root"])
        if not root.is_dir():
            raise DataError(f"celeba: root {root} does not exist or is not a directory")
        for f in FILES:
            if not (root / f).exists():
                raise DataError(f"celeba: missing {root / f} (expected {', '.join(FILES)} in root)")
        if not isinstance(o["image_size"], int) or o["image_size"] < 8:
            raise DataError(f"celeba option image_size must be an integer >= 8, got {o['image_size']!r}")
        check_pretrained(o["pretrained"], o["weights"], self.name, self.given)

    def load(self) -> Splits:
        root = data_root(self.opts["root"])
        attrs = read_attributes(root / "list_attr_celeba.txt")
        part = read_partition(root / "list_eval_partition.txt")
        missing = sorted(set(attrs) ^ set(part))
        if missing:
            raise DataError(f"celeba: {missing[0]} is in only one of list_attr_celeba.txt and list_eval_partition.txt "
                            f"({len(missing)} such files)")
        folder = root / "img_align_celeba"
        out = {}
        for s in ("train", "val", "test"):
            files = sorted(f for f, v in part.items() if v == s)
            if not files:
                raise DataError(f"celeba: {root / 'list_eval_partition.txt'} assigns no image to {s}")
            for f in files:
                if not (folder / f).is_file():
                    raise DataError(f"celeba: image {folder / f} (listed in list_attr_celeba.txt) does not exist")
            labels = torch.tensor([attrs[f] for f in files], dtype=torch.int64)
            out[s] = CelebASplit(folder, files, labels, self.opts["image_size"])
        return Splits(**out)

    def encoder_blocks(self) -> list[nn.Module]:
        o = self.opts
        return resnet_stages(resnet("resnet18", pretrained=o["pretrained"], weights=o["weights"], dataset=self.name)) \
            + [GlobalPool()]

    def pretrained_weights(self) -> list[Weights]:
        return backbone_weights(self.name, "resnet18", self.opts["pretrained"], self.opts["weights"])

    def head(self, task: str) -> nn.Module:
        return nn.Linear(512, 2)

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(pred, target)

    def accumulators(self) -> dict[str, Accumulator]:
        return {t: Accuracy() for t in self.tasks}
