"""``cityscapes``: CityScapes (Cordts et al., 2016) as preprocessed by MTAN (Liu et al., 2019): 7-class
segmentation and depth at 128x256 (2,975 train / 500 test).

Same model, losses and metrics as ``nyuv2`` (Lin et al., 2022, Appendix: the
network and optimiser are those of NYUv2, batch 64). Layout: docs/data.md.
"""

from __future__ import annotations

from ._dense import DenseBenchmark
from .base import Defaults, register


@register
class CityScapes(DenseBenchmark):
    name = "cityscapes"
    description = "CityScapes: 7-class segmentation and depth (preprocessed .npy layout; needs root)"
    tasks = ("segmentation", "depth")
    num_classes = 7
    out_channels = {"segmentation": 7, "depth": 1}
    defaults = Defaults(epochs=200, batch_size=64, lr=1e-4, weight_decay=1e-5, optimizer="adam", scheduler="step",
                        scheduler_options={"step_size": 100})
