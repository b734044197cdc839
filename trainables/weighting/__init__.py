"""Weighting methods: one module per method, registered by name.

Every module in this package is imported here so that its ``@register``
decorators run; ``build``/``build_pipeline`` resolve spec names.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import GradientMethod, HParam, LossWeighting, Method
from .registry import Pipeline, build, build_pipeline, get, names, register, split_name
from .sampling import DISTRIBUTIONS, sample

_INFRA = {"base", "registry", "sampling"}
for _m in pkgutil.iter_modules(__path__):
    if _m.name not in _INFRA and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = [
    "DISTRIBUTIONS",
    "GradientMethod",
    "HParam",
    "LossWeighting",
    "Method",
    "Pipeline",
    "build",
    "build_pipeline",
    "get",
    "names",
    "register",
    "sample",
    "split_name",
]
