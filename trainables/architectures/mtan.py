"""MTAN, the Multi-Task Attention Network (Liu et al., CVPR 2019): a shared backbone with per-task soft attention.

The encoder stages are shared. For each task and stage ``j`` an attention
module computes a soft mask ``a_j = sigmoid(g_j([p_j ; f_j(a^_{j-1})]))``
over the stage's output ``p_j`` and passes ``a^_j = a_j * p_j`` on, where
``g_j`` is two 1x1 convolutions (BN + ReLU between them) and ``f_j``
projects the previous stage's attended features ``a^_{j-1}`` to ``p_j``'s
width (1x1 conv + BN + ReLU) and resolution (average pooling, or bilinear
upsampling). At the first stage the mask reads ``p_1`` alone. Liu et al.
read the mask from a stage's inner feature and its output; litmus's stages
are opaque, so the mask reads the stage output. Non-image stages use the
same modules as channels-last linear maps (see ``_mixing``). The task's
head reads its last attended features.

Shared parameters: the backbone stages (every task's gradient reaches
them); the attention modules and heads are task-specific. There is no
single shared representation (``supports_rep = False``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..datasets.base import Benchmark
from ._mixing import ChannelsLast, check_width, feature_dim, reject_unknown, stage_widths
from .base import MTLModel, register


def _pointwise(cin: int, cout: int, *, final: bool = False) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(cin, cout)]
    if not final:
        layers += [nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]
    return ChannelsLast(nn.Sequential(*layers))


def match_shape(prev: Tensor, cur: Tensor) -> Tensor:
    """Resize ``prev`` (same width as ``cur``) to ``cur``'s non-feature dimensions."""
    if prev.shape == cur.shape:
        return prev
    if prev.dim() == 4 and cur.dim() == 4:
        h, w = cur.shape[-2:]
        if prev.shape[-2] >= h and prev.shape[-1] >= w:
            return nn.functional.adaptive_avg_pool2d(prev, (h, w))
        return nn.functional.interpolate(prev, size=(h, w), mode="bilinear", align_corners=False)
    # different ranks: average every non-feature axis away, then broadcast over cur's
    d = feature_dim(prev)
    pooled = prev.movedim(d, -1).reshape(prev.shape[0], -1, prev.shape[d]).mean(1)  # [N, C]
    dc = feature_dim(cur)
    shape = [cur.shape[0]] + [1] * (cur.dim() - 1)
    shape[dc] = cur.shape[dc]
    return pooled.reshape(shape).expand_as(cur)


class AttentionModule(nn.Module):
    """One task's attention at one stage: mask from the stage output and the previous attended features."""

    def __init__(self, width: int, prev_width: int | None) -> None:
        super().__init__()
        self.project = _pointwise(prev_width, width) if prev_width is not None else None
        cin = 2 * width if prev_width is not None else width
        self.mask = nn.Sequential(_pointwise(cin, width), _pointwise(width, width, final=True))

    def forward(self, p: Tensor, prev: Tensor | None) -> Tensor:
        z = p
        if self.project is not None and prev is not None:
            z = torch.cat([p, match_shape(self.project(prev), p)], dim=feature_dim(p))
        return torch.sigmoid(self.mask(z)) * p


@register
class MTAN(MTLModel):
    name = "mtan"
    supports_rep = False

    def __init__(self, benchmark: Benchmark, *, channels: Sequence[int] | None = None, **unknown: object) -> None:
        super().__init__(benchmark)
        reject_unknown(unknown, self.name, ("channels",))
        self.benchmark = benchmark
        self.stages = nn.ModuleList(benchmark.encoder_blocks())
        self.widths = stage_widths(list(self.stages), channels)
        self.attention = nn.ModuleDict({
            t: nn.ModuleList([AttentionModule(w, self.widths[j - 1] if j else None) for j, w in enumerate(self.widths)])
            for t in self.tasks
        })
        self.heads = nn.ModuleDict({t: benchmark.head(t) for t in self.tasks})

    def forward(self, x: Tensor, tasks: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        wanted = tasks or self.tasks
        att: dict[str, Tensor | None] = {t: None for t in wanted}
        h = x
        for j, stage in enumerate(self.stages):
            h = stage(h)
            check_width(h, self.widths[j], f"mtan stage {j}")
            for t in wanted:
                att[t] = self.attention[t][j](h, att[t])
        return {t: self.heads[t](self.benchmark.head_input(att[t], x)) for t in wanted}  # type: ignore[arg-type]

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.stages.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.attention[task].parameters()) + list(self.heads[task].parameters())
