"""Helpers shared by the multi-column architectures (cross-stitch, NDDR, MTAN, MMoE).

Feature tensors between encoder stages come in any shape. The *feature axis*
is dim 1 for image-like tensors (4-D ``[N, C, H, W]`` and 5-D) and the last
dim otherwise (2-D ``[N, C]``, 3-D token features ``[N, L, C]``), so mixing
units act as 1x1 convolutions on feature maps and as channels-last linear
maps on everything else.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from litmus.errors import ConfigError


def feature_dim(x: Tensor) -> int:
    """The axis holding features: 1 for 4-D/5-D tensors, the last axis otherwise."""
    return 1 if x.dim() >= 4 else x.dim() - 1


def num_features(block: nn.Module) -> int:
    """Output feature count of a stage: its ``out_features`` attribute if it declares one, else read from its last
    sized layer (Conv, BatchNorm, Linear, LayerNorm, a Hugging Face model's ``hidden_size``)."""
    declared = getattr(block, "out_features", None)
    if isinstance(declared, int):
        return declared
    config = getattr(block, "config", None)
    if config is not None and hasattr(config, "hidden_size"):
        return int(config.hidden_size)
    for m in reversed(list(block.modules())):
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "hidden_size"):
            return int(cfg.hidden_size)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
            return int(m.out_channels)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)):
            return int(m.num_features if hasattr(m, "num_features") else m.num_channels)
        if isinstance(m, nn.Linear):
            return int(m.out_features)
        if isinstance(m, nn.LayerNorm):
            return int(m.normalized_shape[-1])
    raise ConfigError(
        f"cannot tell the output width of encoder stage {type(block).__name__}: it has no Conv/BatchNorm/Linear/"
        "LayerNorm layer; pass the widths as the architecture option 'channels: [c1, c2, ...]'"
    )


def stage_widths(blocks: Sequence[nn.Module], channels: Sequence[int] | None) -> list[int]:
    """Output width of each stage (``channels`` overrides the inference)."""
    if channels is not None:
        if len(channels) != len(blocks):
            raise ConfigError(f"architecture option channels has {len(channels)} entries for {len(blocks)} encoder stages")
        return [int(c) for c in channels]
    widths: list[int] = []
    for b in blocks:
        if widths and not any(True for _ in b.parameters()):
            widths.append(widths[-1])  # a parameter-free stage (pooling, flatten) keeps the width
        else:
            widths.append(num_features(b))
    return widths


def check_width(x: Tensor, expected: int, where: str) -> None:
    got = x.shape[feature_dim(x)] if x.dim() > 1 else 1
    if got != expected:
        raise ConfigError(
            f"{where}: the stage output has {got} features on axis {feature_dim(x)} (shape {tuple(x.shape)}), "
            f"the mixing unit was built for {expected}; pass the architecture option 'channels'"
        )


def input_width(block: nn.Module) -> tuple[str, int]:
    """(kind, width) of the first layer of the first stage: ``("conv", C_in)`` or ``("linear", in_features)``."""
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            return "conv", int(m.in_channels)
        if isinstance(m, nn.Linear):
            return "linear", int(m.in_features)
        if isinstance(m, nn.Embedding) or getattr(m, "config", None) is not None:
            break
    raise ConfigError(
        f"the encoder's first stage ({type(block).__name__}) does not start with a Conv2d or Linear layer, "
        "so the architecture cannot read its input (image or vector inputs only)"
    )


class ChannelsLast(nn.Module):
    """Apply a module expecting ``[*, C]`` to a tensor whose feature axis is :func:`feature_dim`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        d = feature_dim(x)
        if d == x.dim() - 1:
            shape = x.shape
            return self.module(x.reshape(-1, shape[-1])).reshape(*shape[:-1], -1)
        moved = x.movedim(d, -1)
        shape = moved.shape
        return self.module(moved.reshape(-1, shape[-1])).reshape(*shape[:-1], -1).movedim(-1, d)


def reject_unknown(options: dict[str, Any], arch: str, valid: Sequence[str]) -> None:
    if options:
        raise ConfigError(f"unknown option(s) {', '.join(sorted(options))} for architecture '{arch}'; "
                          f"valid: {', '.join(valid)}")
