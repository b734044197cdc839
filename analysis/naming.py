"""Method names: variants, groups (loss / gradient / random) and baseline resolution.

The grouping follows the random-weighting paper (Lin et al., Table 1): loss
balancing, gradient balancing, and random weighting (RLW, RGW). A method's
family comes from the method registry, written into the trials table's
``family`` column by study (analysis/schema.py ``Family``): :func:`families`
reads it, so a new or plugin method is grouped right with no list to update
here. Without a trials table, only the name's structure is used (``A+B`` is a
combination, a ``:distribution`` suffix a random weighting, anything else a
loss weighting).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from .errors import AnalysisError

#: the random weightings of the paper, for the side a distribution suffix belongs to in Table-3 style tables
#: (RLW weights losses, RGW gradients); their *family* comes from the trials table like any method's
RANDOM_METHODS: frozenset[str] = frozenset({"rlw", "rgw"})
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


def families(trials: pd.DataFrame | None) -> dict[str, str]:
    """``variant -> family`` as the trials table records it (from the method registry); empty without one."""
    if trials is None or not len(trials) or "family" not in trials.columns:
        return {}
    t = trials[trials["family"].notna()]
    variants = t["variant"] if "variant" in t.columns else variant_column(t["method"], t["distribution"])
    return dict(zip(variants.astype(str), t["family"].astype(str)))


def group_of(variant: str, family: Mapping[str, str] | None = None) -> str:
    """The variant's family from ``family`` (:func:`families` of the trials table); without it, from the name's
    structure: ``gradient`` for any ``A+B``, ``random`` with a distribution suffix, else ``loss``."""
    if family and variant in family:
        return family[variant]
    if "+" in method_of(variant):
        return "gradient"
    return "random" if ":" in variant else "loss"


def split_combination(variant: str, family: Mapping[str, str] | None = None) -> tuple[str, str]:
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
    if method == "rgw" or (not dist and group_of(variant, family) == "gradient"):
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
