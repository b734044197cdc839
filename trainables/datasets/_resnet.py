"""torchvision ResNets as encoder stages, optionally dilated (output stride 8), optionally pretrained.

``pretrained`` is ``False``, ``True`` (torchvision's ImageNet weights through
its normal mechanism: downloaded once into the torch hub cache on the user's
machine, never in tests) or a path to a local state-dict file (``.pth``) of
the same torchvision model, which works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
WIDTH = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


def check_pretrained(value: Any, dataset: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, str):
        if not Path(value).expanduser().is_file():
            raise ValueError(f"{dataset} option pretrained: state-dict file {value} does not exist "
                             "(expected true, false or the path of a torchvision ResNet state dict)")
        return
    raise ValueError(f"{dataset} option pretrained must be true, false or a state-dict path, got {value!r}")


def check_backbone(value: Any, dataset: str) -> None:
    if value not in BACKBONES:
        raise ValueError(f"{dataset} option backbone must be one of {', '.join(BACKBONES)}, got {value!r}")


def _dilate_basic(layer: nn.Sequential, dilation: int) -> None:
    """Turn a BasicBlock layer's stride into dilation (torchvision only does this for Bottleneck)."""
    for i, block in enumerate(layer):
        if i == 0:
            block.conv1.stride = (1, 1)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
        for conv in (block.conv1, block.conv2):
            d = dilation // 2 if (i == 0 and conv is block.conv1) else dilation
            conv.dilation, conv.padding = (d, d), (d, d)


def resnet(name: str, *, pretrained: bool | str = False, dilated: bool = False) -> nn.Module:
    """A torchvision ResNet; ``dilated`` gives output stride 8 (layers 3-4 dilated 2 and 4, as DeepLab)."""
    import torchvision

    ctor = getattr(torchvision.models, name)
    weights = None
    if pretrained is True:
        weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    bottleneck = name in ("resnet50", "resnet101")
    kwargs: dict[str, Any] = {"replace_stride_with_dilation": [False, True, True]} if dilated and bottleneck else {}
    model = ctor(weights=weights, **kwargs)
    if dilated and not bottleneck:
        _dilate_basic(model.layer3, 2)
        _dilate_basic(model.layer4, 4)
    if isinstance(pretrained, str):
        path = Path(pretrained).expanduser()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - re-raised with the file name
            raise ValueError(f"cannot read the state dict {path}: {err}") from err
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{path} is not a torchvision {name} state dict: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model


def resnet_stages(model: nn.Module) -> list[nn.Module]:
    """``[stem, layer1, layer2, layer3, layer4]`` of a torchvision ResNet."""
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    return [stem, model.layer1, model.layer2, model.layer3, model.layer4]


class GlobalPool(nn.Module):
    """``[N, C, H, W] -> [N, C]`` average pooling."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
