"""DeepLabV3 ASPP heads for dense tasks, upsampled to the input size (Chen et al., 2017/2018)."""

from __future__ import annotations

from torch import Tensor, nn


class Sized:
    """A feature map with the spatial size the prediction must have (what ``head_input`` hands the heads)."""

    __slots__ = ("features", "size")

    def __init__(self, features: Tensor, size: tuple[int, int]) -> None:
        self.features, self.size = features, size


class ASPPHead(nn.Module):
    """torchvision's DeepLabV3 ASPP (1x1, three 3x3 atrous branches, image pooling) + 3x3 conv + 1x1 classifier."""

    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, int, int] = (12, 24, 36),
                 channels: int = 256) -> None:
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import ASPP

        self.aspp = ASPP(in_channels, list(rates), channels)
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True), nn.Conv2d(channels, out_channels, 1))

    def forward(self, inp: Sized | Tensor) -> Tensor:
        feats, size = (inp.features, inp.size) if isinstance(inp, Sized) else (inp, None)
        out = self.body(self.aspp(feats))
        if size is not None and tuple(out.shape[-2:]) != tuple(size):
            out = nn.functional.interpolate(out, size=size, mode="bilinear", align_corners=True)
        return out
