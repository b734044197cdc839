"""Cross-stitch networks (Misra et al., CVPR 2016): one encoder column per task, linearly stitched between stages.

After every encoder stage but the last, a cross-stitch unit replaces each
task's features by a learned linear combination of all tasks' features,
``x~_t = sum_s alpha_ts x_s``, with one ``T x T`` matrix per stage (Misra et
al.'s per-layer units). Initialisation follows the paper: ``alpha_tt = 0.9``
(option ``self_weight``) and the rest ``(1 - 0.9) / (T - 1)`` split evenly
(0.1 for two tasks), so each row sums to one. The mixing works on any tensor
shape (it combines whole tensors). See :class:`ColumnModel` for what is
shared. No single shared representation: ``supports_rep = False``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError, MethodError

from ._columns import ColumnModel
from .base import register


class CrossStitchUnit(nn.Module):
    """``x~_t = sum_s alpha[t, s] x_s`` for T same-shaped task tensors."""

    def __init__(self, n_tasks: int, self_weight: float = 0.9) -> None:
        super().__init__()
        off = (1.0 - self_weight) / (n_tasks - 1) if n_tasks > 1 else 0.0
        alpha = torch.full((n_tasks, n_tasks), off)
        alpha.fill_diagonal_(self_weight)
        self.alpha = nn.Parameter(alpha)

    def forward(self, feats: list[Tensor], where: str = "cross-stitch unit") -> list[Tensor]:
        shapes = {tuple(f.shape) for f in feats}
        if len(shapes) != 1:
            raise MethodError(f"{where}: task columns produced different shapes {sorted(shapes)}")
        stacked = torch.stack(feats)  # [T, N, ...]
        mixed = torch.tensordot(self.alpha, stacked, dims=([1], [0]))
        return list(mixed.unbind(0))


@register
class CrossStitch(ColumnModel):
    name = "cross_stitch"
    supports_rep = False
    option_names = ("shared", "channels", "self_weight")

    def _extra_options(self, unknown: dict[str, object]) -> None:
        sw = float(unknown.pop("self_weight", 0.9))  # type: ignore[arg-type]
        if not 0.0 <= sw <= 1.0:
            raise ConfigError(f"cross_stitch option self_weight must be in [0, 1], got {sw}")
        self.self_weight = sw

    def make_unit(self, width: int, n_tasks: int) -> nn.Module:
        return CrossStitchUnit(n_tasks, self.self_weight)
