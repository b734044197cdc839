"""Aligned-MTL: independent component alignment (Senushkin et al., CVPR 2023, Algorithm 1).

The Gramian ``G = V diag(lambda) V^T`` (rank ``r``) gives the balance transformation
``B = sqrt(lambda_min) V diag(lambda)^{-1/2} V^T``: the aligned gradient matrix ``J^T B`` has equal
singular values; the direction combines its columns with the preference weights.
Wraps ``torchjd.aggregation.AlignedMTLWeighting`` (``torch.linalg.eigh``, not the removed
``torch.symeig``), whose preference vector is the mean ``1/T``. The official code and LibMTL
*sum* the aligned gradients; litmus multiplies torchjd's weights by ``T``, which is the same.

Scale: ``T`` identical gradients ``g`` give ``T * g`` (EW's sum). ``scale_mode`` ``min`` (paper),
``median`` or ``rmse`` (mean eigenvalue) picks the common singular value.
"""

from __future__ import annotations

from torch import Tensor

from litmus.errors import ConfigError

from ._grad import WeightedGradientMethod, gramian
from .base import HParam
from .registry import register

SCALE_MODES = ("min", "median", "rmse")


@register
class AlignedMTL(WeightedGradientMethod):
    name = "aligned_mtl"
    paper = "Senushkin et al., CVPR 2023, Algorithm 1"
    spaces = ("param", "rep")
    default_space = "param"
    hparams = (
        HParam("scale_mode", "min", kind="categorical", choices=SCALE_MODES, tunable=False,
               help="eigenvalue that sets the common scale of the aligned gradients"),
    )

    def __init__(self, num_tasks: int, scale_mode: str = "min") -> None:
        super().__init__(num_tasks)
        if scale_mode not in SCALE_MODES:
            raise ConfigError(f"aligned_mtl.scale_mode must be one of {list(SCALE_MODES)}, got {scale_mode!r}")
        self.scale_mode = scale_mode
        from torchjd.aggregation import AlignedMTLWeighting  # torchjd (cvxpy, scipy.stats) loads when the method is built
        self._weighting = AlignedMTLWeighting(scale_mode=scale_mode)  # type: ignore[arg-type]

    def weights(self, jacobian: Tensor, losses: Tensor) -> Tensor:
        return self.num_tasks * self._weighting(gramian(jacobian))
