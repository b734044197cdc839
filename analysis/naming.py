"""Method names: variants, groups (loss / gradient / random) and baseline resolution.

The grouping follows the random-weighting paper (Lin et al., Table 1): loss
balancing, gradient balancing, and random weighting (RLW, RGW). The list of
gradient methods lives here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .errors import AnalysisError

RANDOM_METHODS: frozenset[str] = frozenset({"rlw", "rgw"})
GRADIENT_METHODS: frozenset[str] = frozenset({
    "mgda", "mgda_ub", "gradnorm", "pcgrad", "graddrop", "imtl_g", "imtl",
    "gradvac", "cagrad", "nash_mtl", "aligned_mtl", "upgrad", "fairgrad",
    "db_mtl", "rotograd", "edm", "cdtt",
})
GROUP_ORDER: tuple[str, ...] = ("baseline", "loss", "gradient", "random")
GROUP_LABELS: dict[str, str] = {
    "baseline": "Baseline", "loss": "Loss Bal.", "gradient": "Gradient Bal.", "random": "Random",
}
DEFAULT_DISTRIBUTION = "normal"


def variant_name(method: str, distribution: str | None) -> str:
    """``method`` when distribution is null, else ``method:distribution`` (e.g. ``rlw:normal``)."""
    if distribution is None or (isinstance(distribution, float) and np.isnan(distribution)):
        return method
    return f"{method}:{distribution}"


def variant_column(method: pd.Series, distribution: pd.Series) -> pd.Series:
    """Vectorised :func:`variant_name` over two columns."""
    method = method.astype(str)
    dist = distribution.astype("object")
    out = method.where(dist.isna(), method + ":" + dist.astype(str))
    return out.astype(str)


def method_of(variant: str) -> str:
    """The method part of a variant (``rlw:normal`` -> ``rlw``)."""
    return variant.split(":", 1)[0]


def group_of(variant: str) -> str:
    """``random`` (rlw, rgw, any distribution), ``gradient`` (a gradient method or any ``A+B``), else ``loss``."""
    method = method_of(variant)
    if "+" in method:
        return "gradient"
    if method in RANDOM_METHODS:
        return "random"
    if method in GRADIENT_METHODS:
        return "gradient"
    return "loss"


def split_combination(variant: str) -> tuple[str, str]:
    """(loss part, gradient part) of a method for Table-3 style tables.

    ``rlw+cagrad`` -> (``rlw``, ``cagrad``); a gradient method alone -> (``ew``, it);
    RGW counts as a gradient-side method; a loss method alone -> (it, ``vanilla``).
    A distribution suffix stays on the random part.
    """
    method, _, dist = variant.partition(":")
    suffix = f":{dist}" if dist else ""
    if "+" in method:
        loss, grad = method.split("+", 1)
        if loss in RANDOM_METHODS:
            return loss + suffix, grad
        return loss, grad + suffix
    if method in GRADIENT_METHODS or method == "rgw":
        return "ew", method + suffix
    return method + suffix, "vanilla"


def resolve_baseline(name: str, variants: Iterable[str], where: str = "") -> str:
    """Map a baseline name to a variant present in ``variants``.

    An exact variant name wins. A bare random method (``rlw``) when the data
    hold several distributions means ``rlw:normal`` (the paper's default);
    when only one distribution is present it means that one.
    """
    present = sorted(set(variants))
    if name in present:
        return name
    if ":" not in name:
        default = f"{name}:{DEFAULT_DISTRIBUTION}"
        if default in present:
            return default
        candidates = [v for v in present if v.startswith(name + ":")]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise AnalysisError(
                f"baseline {name!r} is ambiguous{where}: choose one of {', '.join(candidates)}"
            )
    raise AnalysisError(
        f"baseline {name!r} is absent{where}; variants present: {', '.join(present) or 'none'}"
    )


def has_baseline(name: str, variants: Iterable[str]) -> bool:
    """Whether :func:`resolve_baseline` would succeed."""
    try:
        resolve_baseline(name, variants)
    except AnalysisError:
        return False
    return True
