"""torchvision ResNets as encoder stages, optionally dilated (output stride 8), optionally pretrained.

``pretrained: true`` loads torchvision's ImageNet weights from the torch hub
cache (the file torchvision itself downloads; fetched there when missing, or
ahead of time with ``litmus weights fetch``); ``weights: PATH`` loads a local
state-dict file (``.pth``) of the same torchvision model instead. Either works
offline once the file is there; a missing file is one clear error naming it
and the ways to supply it, never a network traceback (see ``_weights``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from litmus.errors import DataError

from ._paths import data_root
from ._weights import backbone_weights, ensure

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
WIDTH = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


def check_pretrained(pretrained: Any, weights: Any, dataset: str, given: set[str] | frozenset[str] = frozenset()) -> None:
    """``pretrained`` is a bool; ``weights`` is ``None`` or an existing state-dict file (and implies pretrained)."""
    if isinstance(pretrained, str):
        raise DataError(f"{dataset} option pretrained must be true or false, got {pretrained!r}; give a local "
                        "state-dict file as the option weights: PATH")
    if not isinstance(pretrained, bool):
        raise DataError(f"{dataset} option pretrained must be true or false, got {pretrained!r}")
    if weights is None:
        return
    if not isinstance(weights, str) or not weights:
        raise DataError(f"{dataset} option weights must be the path of a torchvision ResNet state dict, got {weights!r}")
    if not data_root(weights).is_file():
        raise DataError(f"{dataset} option weights: state-dict file {weights} does not exist "
                        "(expected the path of a torchvision ResNet state dict)")
    if "pretrained" in given and pretrained is False:
        raise DataError(f"{dataset}: option weights ({weights}) is set but pretrained is false; drop one of them")


def check_backbone(value: Any, dataset: str) -> None:
    if value not in BACKBONES:
        raise DataError(f"{dataset} option backbone must be one of {', '.join(BACKBONES)}, got {value!r}")


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


def resnet(name: str, *, pretrained: bool = False, weights: str | None = None, dilated: bool = False,
           dataset: str = "") -> nn.Module:
    """A torchvision ResNet; ``dilated`` gives output stride 8 (layers 3-4 dilated 2 and 4, as DeepLab);
    initialised from ``weights`` (a file) or, if ``pretrained``, torchvision's ImageNet weights in the hub cache."""
    import torchvision

    ctor = getattr(torchvision.models, name)
    bottleneck = name in ("resnet50", "resnet101")
    kwargs: dict[str, Any] = {"replace_stride_with_dilation": [False, True, True]} if dilated and bottleneck else {}
    model = ctor(weights=None, **kwargs)
    if dilated and not bottleneck:
        _dilate_basic(model.layer3, 2)
        _dilate_basic(model.layer4, 4)
    needed = backbone_weights(dataset or name, name, bool(pretrained), weights)
    if needed:
        path = ensure(needed[0])
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - re-raised with the file name
            raise DataError(f"cannot read the state dict {path}: {err}") from err
        if not isinstance(state, dict):
            raise DataError(f"{path} holds a {type(state).__name__}, expected a torchvision {name} state dict")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise DataError(f"{path} is not a torchvision {name} state dict: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model


def resnet_stages(model: nn.Module) -> list[nn.Module]:
    """``[stem, layer1, layer2, layer3, layer4]`` of a torchvision ResNet."""
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    return [stem, model.layer1, model.layer2, model.layer3, model.layer4]


class GlobalPool(nn.Module):
    """``[N, C, H, W] -> [N, C]`` average pooling."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
