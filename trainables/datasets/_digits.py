"""scikit-learn's bundled handwritten digits (1,797 8x8 images; no download), split by source image."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor


@lru_cache(maxsize=1)
def _digits() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.tensor(d.images, dtype=torch.float32) / 16.0  # [1797, 8, 8] in [0, 1]
    return images, torch.tensor(d.target, dtype=torch.int64)


def source_pools(data_seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, tuple[Tensor, Tensor]]:
    """Disjoint train/val/test pools of source images (a fixed permutation from ``data_seed``)."""
    images, labels = _digits()
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(data_seed))
    n_train = int(fractions[0] * len(images))
    n_val = int(fractions[1] * len(images))
    idx = {"train": perm[:n_train], "val": perm[n_train : n_train + n_val], "test": perm[n_train + n_val :]}
    return {k: (images[v], labels[v]) for k, v in idx.items()}
