"""``nyuv2``: NYU Depth v2 (Silberman et al., 2012) as preprocessed by MTAN (Liu et al., 2019): 13-class
segmentation, depth and surface normals; 795 train / 654 test images at 288x384.

Model as the random-weighting paper (Lin et al., 2022, Sec. 5.1): DeepLabV3+-style
dilated ResNet-50 encoder (output stride 8) and an ASPP head (rates 12/24/36)
per task, outputs upsampled to the input size. Losses: cross-entropy (ignore
-1), L1 on valid depth, ``1 - cosine`` on valid normals; metrics as
``scenes``. Layout and options: docs/data.md.
"""

from __future__ import annotations

from ._dense import DenseBenchmark
from .base import Defaults, register


@register
class NYUv2(DenseBenchmark):
    name = "nyuv2"
    description = "NYUv2: 13-class segmentation, depth, surface normals (preprocessed .npy layout; needs root)"
    tasks = ("segmentation", "depth", "normal")
    num_classes = 13
    out_channels = {"segmentation": 13, "depth": 1, "normal": 3}
    defaults = Defaults(epochs=200, batch_size=8, lr=1e-4, weight_decay=1e-5, optimizer="adam", scheduler="step",
                        scheduler_options={"step_size": 100})
