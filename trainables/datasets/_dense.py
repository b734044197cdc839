"""Shared code of the preprocessed NYUv2 / CityScapes layout: ``{root}/{train,val}/{image,label,depth,normal}/{i}.npy``.

This is the layout of the preprocessed releases used by MTAN (Liu et al.,
2019), LibMTL and the random-weighting paper (Lin et al., 2022): ``image``
HWC float (3 channels), ``label`` HW (``-1`` = ignore), ``depth`` HW1 (``0`` =
invalid), ``normal`` HWC (3 channels, all ``0`` = invalid). The ``val`` folder
is the benchmark's *test* split; a validation split for model selection is
carved deterministically from ``train`` (``val_fraction``), so the best epoch
is never chosen on test.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from litmus.errors import DataError

from ..metrics import Accumulator, Depth, Normal, Segmentation
from ._aspp import ASPPHead, Sized
from ._resnet import WIDTH, check_backbone, check_pretrained, resnet, resnet_stages
from ._paths import data_root
from ._weights import Weights, backbone_weights
from .base import Benchmark, Option, Splits
from .scenes import DENSE_LOSSES

FOLDERS = ("train", "val")
SCALES = (1.0, 1.2, 1.5)


def _indices(folder: Path) -> list[str]:
    return sorted((p.stem for p in folder.glob("*.npy")), key=lambda s: (len(s), s))


def _channels(arr_shape: tuple[int, ...], hw: tuple[int, int], channels: int) -> bool:
    if channels == 0:
        return tuple(arr_shape) == hw
    return tuple(arr_shape) in ((*hw, channels),) or (channels == 1 and tuple(arr_shape) == hw)


class DenseFolder(Dataset):
    """One split: reads ``{task}/{i}.npy`` per item; optional scale-crop and flip augmentation."""

    def __init__(self, root: Path, ids: list[str], tasks: tuple[str, ...], augment: bool,
                 folders: dict[str, str] | None = None) -> None:
        self.root, self.ids, self.tasks, self.augment = root, ids, tasks, augment
        self.folders = dict(TASK_FOLDER, **(folders or {}))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> tuple[Tensor, dict[str, Tensor]]:
        i = self.ids[k]
        image = torch.from_numpy(np.load(self.root / "image" / f"{i}.npy").astype(np.float32)).permute(2, 0, 1)
        targets: dict[str, Tensor] = {}
        for t in self.tasks:
            arr = np.load(self.root / self.folders[t] / f"{i}.npy")
            if t == "segmentation":
                targets[t] = torch.from_numpy(arr.astype(np.int64))
            elif t == "depth":
                d = torch.from_numpy(arr.astype(np.float32))
                targets[t] = d.reshape(1, *d.shape[:2])
            else:
                targets[t] = torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1)
        if self.augment:
            image, targets = augment(image, targets)
        return image, targets


TASK_FOLDER = {"segmentation": "label", "depth": "depth", "normal": "normal"}


def augment(image: Tensor, targets: dict[str, Tensor], generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Random scale-crop (scale 1, 1.2 or 1.5) and horizontal flip, drawn from torch's RNG (seeded by the trainer)."""
    h, w = image.shape[-2:]
    s = SCALES[int(torch.randint(len(SCALES), (1,), generator=generator))]
    ch, cw = int(h / s), int(w / s)
    y0 = int(torch.randint(h - ch + 1, (1,), generator=generator))
    x0 = int(torch.randint(w - cw + 1, (1,), generator=generator))
    flip = bool(torch.rand(1, generator=generator) < 0.5)
    return scale_crop_flip(image, targets, s, y0, x0, flip)


def scale_crop_flip(image: Tensor, targets: dict[str, Tensor], scale: float, y0: int, x0: int,
                    flip: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """Crop ``(H/scale, W/scale)`` at ``(y0, x0)``, resize back (bilinear image, nearest targets), divide depth by
    ``scale`` (objects appear closer); optionally flip horizontally, negating the normal's x component."""
    h, w = image.shape[-2:]
    if scale != 1.0:
        ch, cw = int(h / scale), int(w / scale)

        def crop(t: Tensor, mode: str) -> Tensor:
            c = t[..., y0 : y0 + ch, x0 : x0 + cw].unsqueeze(0).float()
            if mode == "nearest":
                return nn.functional.interpolate(c, size=(h, w), mode="nearest").squeeze(0)
            return nn.functional.interpolate(c, size=(h, w), mode="bilinear", align_corners=True).squeeze(0)

        image = crop(image, "bilinear")
        out = {}
        for t, v in targets.items():
            if t == "segmentation":
                out[t] = crop(v.unsqueeze(0), "nearest").squeeze(0).long()
            elif t == "depth":
                out[t] = crop(v, "nearest") / scale
            else:
                out[t] = crop(v, "nearest")
        targets = out
    if flip:
        image = image.flip(-1)
        targets = {t: v.flip(-1) for t, v in targets.items()}
        if "normal" in targets:
            n = targets["normal"].clone()
            n[0] = -n[0]
            targets["normal"] = n
    return image, targets


class DenseBenchmark(Benchmark):
    """A dense-prediction benchmark in the preprocessed ``.npy`` layout (subclasses set tasks and classes)."""

    num_classes: int = 0
    out_channels: dict[str, int] = {}
    #: the options of every dense benchmark (NYUv2, CityScapes)
    options = (
        Option("root", None, "dataset folder holding train/ and val/ (required)"),
        Option("augment", False, "random scale-crop (1, 1.2, 1.5; depth / scale) and horizontal flip (normal x negated)"),
        Option("pretrained", False, "true: torchvision ImageNet weights (torch hub cache; see `litmus weights`)"),
        Option("weights", None, "a local state-dict file of the backbone (offline; implies pretrained)"),
        Option("backbone", "resnet50", "resnet50 (the papers) or resnet18/34/101"),
        Option("dilated", True, "output stride 8 (DeepLab dilated ResNet)"),
        Option("head_channels", 256, "ASPP channels"),
        Option("val_fraction", 0.1, "fraction of train/ held out as the validation split (never the test split)"),
        Option("split_seed", 0, "seed of the train/validation partition"),
    )

    # --- validation -------------------------------------------------------
    def check(self) -> None:
        o = self.opts
        if o["root"] is None:
            raise DataError(f"{self.name} needs the option root: the folder holding train/ and val/ (see docs/data.md)")
        root = data_root(o["root"])
        if not root.is_dir():
            raise DataError(f"{self.name}: root {root} does not exist or is not a directory")
        self.folders = self._task_folders(root)
        for split in FOLDERS:
            for folder in ("image",) + tuple(self.folders[t] for t in self.tasks):
                d = root / split / folder
                if not d.is_dir():
                    alt = f" or {split}/label_{self.num_classes}/ as in MTAN's archive" if folder == "label" else ""
                    raise DataError(f"{self.name}: missing folder {d} (expected {split}/{folder}/<i>.npy files{alt})")
            if not _indices(root / split / "image"):
                raise DataError(f"{self.name}: no .npy files in {root / split / 'image'}")
        check_pretrained(o["pretrained"], o["weights"], self.name, self.given)
        check_backbone(o["backbone"], self.name)
        if not isinstance(o["val_fraction"], (int, float)) or not 0.0 <= o["val_fraction"] < 1.0:
            raise DataError(f"{self.name} option val_fraction must be in [0, 1), got {o['val_fraction']!r}")
        if not isinstance(o["head_channels"], int) or o["head_channels"] < 1:
            raise DataError(f"{self.name} option head_channels must be a positive integer, got {o['head_channels']!r}")

    @property
    def root(self) -> Path:
        return data_root(self.opts["root"])

    def _task_folders(self, root: Path) -> dict[str, str]:
        """Each task's folder; segmentation is ``label/`` (LibMTL's archives) or ``label_{classes}/`` (MTAN's
        CityScapes archive holds ``label_2``, ``label_7``, ``label_19``), whichever ``train/`` has."""
        seg = [f for f in ("label", f"label_{self.num_classes}") if (root / "train" / f).is_dir()]
        return dict(TASK_FOLDER, segmentation=seg[0] if seg else "label")

    def _validate_split(self, split: str, hw: tuple[int, int] | None = None) -> tuple[list[str], tuple[int, int]]:
        """Every file present, shapes consistent (with ``hw`` if given), labels in range; returns ids and image size."""
        base = self.root / split
        ids = _indices(base / "image")
        for i in ids:
            f = base / "image" / f"{i}.npy"
            try:
                img = np.load(f, mmap_mode="r")
            except Exception as err:  # noqa: BLE001
                raise DataError(f"{self.name}: cannot read {f}: {err}") from err
            if img.ndim != 3 or img.shape[2] != 3:
                raise DataError(f"{self.name}: {f} has shape {img.shape}, expected (H, W, 3)")
            if hw is None:
                hw = (int(img.shape[0]), int(img.shape[1]))
            elif img.shape[:2] != hw:
                raise DataError(f"{self.name}: {f} is {img.shape[0]}x{img.shape[1]}, other images are {hw[0]}x{hw[1]}")
            for t in self.tasks:
                g = base / self.folders[t] / f"{i}.npy"
                if not g.is_file():
                    raise DataError(f"{self.name}: missing file {g} (every image needs its {self.folders[t]})")
                arr = np.load(g, mmap_mode="r")
                ch = {"segmentation": 0, "depth": 1, "normal": 3}[t]
                if not _channels(arr.shape, hw, ch):
                    want = {0: "(H, W)", 1: "(H, W, 1) or (H, W)", 3: "(H, W, 3)"}[ch].replace("H", str(hw[0])).replace("W", str(hw[1]))
                    raise DataError(f"{self.name}: {g} has shape {arr.shape}, expected {want}")
                if t == "segmentation":
                    lab = np.asarray(arr)
                    if lab.size and (lab.min() < -1 or lab.max() >= self.num_classes or not np.all(lab == np.round(lab))):
                        raise DataError(f"{self.name}: {g} has labels in [{lab.min()}, {lab.max()}], expected integers "
                                        f"in [0, {self.num_classes - 1}] or -1 (ignore)")
        assert hw is not None
        return ids, hw

    # --- data -------------------------------------------------------------
    def load(self) -> Splits:
        train_ids, hw = self._validate_split("train")
        test_ids, _ = self._validate_split("val", hw)
        rng = random.Random(self.opts["split_seed"])
        perm = list(train_ids)
        rng.shuffle(perm)
        n_val = int(round(self.opts["val_fraction"] * len(perm)))
        if self.opts["val_fraction"] > 0 and n_val == 0:
            n_val = 1
        if n_val >= len(perm):
            raise DataError(f"{self.name}: val_fraction {self.opts['val_fraction']} leaves no training image "
                            f"out of {len(perm)}")
        val_ids = sorted(perm[:n_val], key=lambda s: (len(s), s))
        fit_ids = sorted(perm[n_val:], key=lambda s: (len(s), s))
        tr = self.root / "train"
        return Splits(
            train=DenseFolder(tr, fit_ids, self.tasks, bool(self.opts["augment"]), self.folders),
            val=DenseFolder(tr, val_ids, self.tasks, False, self.folders) if val_ids else None,
            test=DenseFolder(self.root / "val", test_ids, self.tasks, False, self.folders),
        )

    # --- model ------------------------------------------------------------
    def encoder_blocks(self) -> list[nn.Module]:
        o = self.opts
        return resnet_stages(resnet(o["backbone"], pretrained=o["pretrained"], weights=o["weights"],
                                    dilated=bool(o["dilated"]), dataset=self.name))

    def pretrained_weights(self) -> list[Weights]:
        o = self.opts
        return backbone_weights(self.name, o["backbone"], o["pretrained"], o["weights"])

    def head_input(self, rep: Tensor, x: Tensor) -> Any:
        return Sized(rep, (int(x.shape[-2]), int(x.shape[-1])))

    def head(self, task: str) -> nn.Module:
        return ASPPHead(WIDTH[self.opts["backbone"]], self.out_channels[task], channels=self.opts["head_channels"])

    def loss(self, task: str, pred: Tensor, target: Tensor) -> Tensor:
        return DENSE_LOSSES[task](pred, target)

    def accumulators(self) -> dict[str, Accumulator]:
        make = {"segmentation": lambda: Segmentation(self.num_classes), "depth": Depth, "normal": Normal}
        return {t: make[t]() for t in self.tasks}
