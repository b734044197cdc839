"""MGDA-UB: MGDA on the shared representation (Sener & Koltun, NeurIPS 2018, Sec. 3.3, Eq. 6).

The same min-norm solve as ``mgda`` (see ``mgda.py``: normalisations, scale ``T * alpha / n``),
but on the gradients w.r.t. the shared representation ``Z`` (``[T, batch, ...]``, flattened),
the upper bound that needs one backward pass per task through the heads only.
"""

from __future__ import annotations

from .mgda import MGDA
from .registry import register


@register
class MGDAUB(MGDA):
    name = "mgda_ub"
    paper = "Sener & Koltun, NeurIPS 2018, Sec. 3.3 (MGDA-UB, Eq. 6)"
    spaces = ("rep",)
    default_space = "rep"
