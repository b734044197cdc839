"""Weighting methods: one module per method, registered by name.

Every module in this package is imported here so that its ``@register``
decorators run; ``build``/``build_pipeline`` resolve spec names.
"""

from __future__ import annotations

from ..registry import import_submodules
from .base import GradientMethod, HParam, LossWeighting, Method
from .registry import (Pipeline, build, build_pipeline, family, get, names, origin, register, split_name,
                       takes_distribution)
from .sampling import DISTRIBUTIONS, sample

import_submodules(__name__, __path__, skip=("base", "registry", "sampling"))

__all__ = [
    "DISTRIBUTIONS",
    "GradientMethod",
    "HParam",
    "LossWeighting",
    "Method",
    "Pipeline",
    "build",
    "build_pipeline",
    "family",
    "get",
    "names",
    "origin",
    "register",
    "sample",
    "split_name",
    "takes_distribution",
]
