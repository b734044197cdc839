"""Image-file datasets: ``relative/path label`` lists, PIL loading, Resize + ImageNet normalisation."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from litmus.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def transform(size: int) -> Callable:
    """Resize to ``size x size``, to tensor, ImageNet normalisation."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                               transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def load_image(path: Path) -> "object":
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise DataError(f"cannot read image {path}: {err}") from err


def resolve(root: Path, rel: str) -> str | None:
    """``rel`` if it exists under ``root``, else the same path with its first folder's underscores and spaces
    swapped (LibMTL's Office-Home lists say ``Real_World/...``, the released archive's folder is
    ``Real World``); ``None`` if neither exists."""
    if (root / rel).is_file():
        return rel
    first, sep, rest = rel.partition("/")
    for alt in (first.replace("_", " "), first.replace(" ", "_")):
        if sep and alt != first and (root / alt / rest).is_file():
            return f"{alt}/{rest}"
    return None


def read_list(path: Path, num_classes: int, root: Path) -> list[tuple[str, int]]:
    """Parse a ``relative/path label`` list (paths may contain spaces); validate labels and that files exist."""
    items: list[tuple[str, int]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.rstrip().rsplit(None, 1)
        if len(parts) != 2:
            raise DataError(f"{path}, line {n}: expected 'relative/path label', got {line!r}")
        rel, lab = parts
        try:
            y = int(lab)
        except ValueError:
            raise DataError(f"{path}, line {n}: label {lab!r} is not an integer") from None
        if not 0 <= y < num_classes:
            raise DataError(f"{path}, line {n}: label {y} out of range, expected 0..{num_classes - 1}")
        found = resolve(root, rel)
        if found is None:
            first = rel.partition("/")[0]
            alt = first.replace("_", " ") if "_" in first else first.replace(" ", "_")
            also = f" (nor under {alt!r})" if alt != first and "/" in rel else ""
            raise DataError(f"{path}, line {n}: image {root / rel} does not exist{also}")
        items.append((found, y))
    if not items:
        raise DataError(f"{path} lists no images")
    return items


class ImageList(Dataset):
    """Images listed with one integer label per image, for one task."""

    def __init__(self, root: Path, items: list[tuple[str, int]], task: str, size: int) -> None:
        self.root, self.items, self.task = root, items, task
        self.tf = transform(size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[Tensor, dict[str, Tensor]]:
        rel, y = self.items[k]
        return self.tf(load_image(self.root / rel)), {self.task: torch.tensor(y, dtype=torch.int64)}
