"""NDDR-CNN (Gao et al., CVPR 2019): per-task columns fused by Neural Discriminative Dimensionality Reduction layers.

After every encoder stage but the last, each task's next input is
``ReLU(BN(W_t [x_1; ...; x_T]))``: a 1x1 convolution (a channels-last
linear map for non-image tensors, see ``_mixing``) from the concatenated
task features (``T*C`` channels) back to ``C``, then batch norm and ReLU.
``W_t`` is initialised as in the paper's "diagonal" scheme: ``alpha * I``
on the task's own block and ``beta * I`` on the others (alpha = 0.9,
option ``self_weight``; beta = (1 - alpha) / (T - 1), 0.1 for two tasks).
Set ``activation: false`` for features that are not post-ReLU (e.g.
transformer hidden states). See :class:`ColumnModel` for what is shared.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError

from ._columns import ColumnModel
from ._mixing import ChannelsLast, check_width, feature_dim
from .base import register


class NDDRLayer(nn.Module):
    """Fuse T task features of width ``width`` into T new ones (one 1x1 conv + BN (+ ReLU) per task)."""

    def __init__(self, width: int, n_tasks: int, self_weight: float = 0.9, activation: bool = True) -> None:
        super().__init__()
        self.width, self.n_tasks, self.activation = width, n_tasks, activation
        beta = (1.0 - self_weight) / (n_tasks - 1) if n_tasks > 1 else 0.0
        eye = torch.eye(width)
        self.weight = nn.ParameterList()
        for t in range(n_tasks):
            w = torch.cat([eye * (self_weight if s == t else beta) for s in range(n_tasks)], dim=1)  # [C, T*C]
            self.weight.append(nn.Parameter(w))
        self.norms = nn.ModuleList([nn.BatchNorm1d(width) for _ in range(n_tasks)])

    def forward(self, feats: list[Tensor], where: str = "NDDR layer") -> list[Tensor]:
        for f in feats:
            check_width(f, self.width, where)
        d = feature_dim(feats[0])
        cat = torch.cat(feats, dim=d)
        out = []
        for w, bn in zip(self.weight, self.norms):
            if cat.dim() >= 4:
                y = nn.functional.conv2d(cat, w[:, :, None, None]) if cat.dim() == 4 else \
                    torch.einsum("oc,nc...->no...", w, cat)
                y = bn(y.flatten(2)).view_as(y)
            else:
                y = ChannelsLast(bn)(cat @ w.t())
            out.append(nn.functional.relu(y) if self.activation else y)
        return out


@register
class NDDR(ColumnModel):
    name = "nddr"
    supports_rep = False
    option_names = ("shared", "channels", "self_weight", "activation")

    def _extra_options(self, unknown: dict[str, object]) -> None:
        sw = float(unknown.pop("self_weight", 0.9))  # type: ignore[arg-type]
        if not 0.0 <= sw <= 1.0:
            raise ConfigError(f"nddr option self_weight must be in [0, 1], got {sw}")
        self.self_weight = sw
        self.activation = bool(unknown.pop("activation", True))

    def make_unit(self, width: int, n_tasks: int) -> nn.Module:
        return NDDRLayer(width, n_tasks, self.self_weight, self.activation)
