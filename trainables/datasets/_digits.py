"""scikit-learn's bundled handwritten digits (1,797 8x8 images; no download), split by source image."""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from litmus.errors import DataError

#: rows and columns of scikit-learn's ``datasets/data/digits.csv.gz`` (64 pixels in 0..16, then the digit)
N_IMAGES, N_COLUMNS = 1797, 65


def digits_file() -> Path:
    """scikit-learn's bundled copy of the UCI digits, found without importing scikit-learn (importing
    ``sklearn.datasets`` costs ~1.7 s of start-up in every trial's process: it loads scipy.stats)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("scikit-learn is not installed; it carries the handwritten digits of multi_digits / "
                        "digit_attributes (pip install scikit-learn)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DataError(f"scikit-learn's digits file is missing: {path}")
    return path


def read_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``digits.csv.gz`` as scikit-learn's ``load_digits`` reads it: one image per line, 64 comma-separated
    pixel counts (0..16) then the digit (0..9). Anything else is an error, not a silently odd dataset."""
    with gzip.open(path, "rt", encoding="ascii", newline="") as f:
        text = f.read()
    rows = text.splitlines()
    try:
        values = np.array([[int(v) for v in row.split(",")] for row in rows], dtype=np.int64)
    except ValueError as e:  # a ragged line makes np.array fail too
        raise DataError(f"{path}: not a table of integers ({e})") from None
    if values.shape != (N_IMAGES, N_COLUMNS):
        raise DataError(f"{path}: expected {N_IMAGES} lines of {N_COLUMNS} values, found shape {values.shape}")
    pixels, target = values[:, :64], values[:, 64]
    if pixels.min() < 0 or pixels.max() > 16 or target.min() < 0 or target.max() > 9:
        raise DataError(f"{path}: pixel counts outside 0..16 or digits outside 0..9")
    return pixels.reshape(-1, 8, 8), target


@lru_cache(maxsize=1)
def _digits() -> tuple[Tensor, Tensor]:
    pixels, target = read_digits(digits_file())
    images = torch.tensor(pixels, dtype=torch.float32) / 16.0  # [1797, 8, 8] in [0, 1]
    return images, torch.tensor(target, dtype=torch.int64)


def source_pools(data_seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, tuple[Tensor, Tensor]]:
    """Disjoint train/val/test pools of source images (a fixed permutation from ``data_seed``)."""
    images, labels = _digits()
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(data_seed))
    n_train = int(fractions[0] * len(images))
    n_val = int(fractions[1] * len(images))
    idx = {"train": perm[:n_train], "val": perm[n_train : n_train + n_val], "test": perm[n_train + n_val :]}
    return {k: (images[v], labels[v]) for k, v in idx.items()}
