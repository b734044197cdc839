"""Benchmarks, one module each, registered by name (``build``, ``names``, ``get``).

Modules run as commands (``python -m trainables.datasets.make_splits``) are not imported here, so running them
does not warn that they are already in ``sys.modules``."""

from __future__ import annotations

from ..registry import import_submodules
from .base import (Benchmark, Defaults, Option, Splits, TensorSplit, build, get, names, origin, register,
                   required_weights)

COMMANDS = ("make_splits", "convert_qm9")

import_submodules(__name__, __path__, skip=("base", *COMMANDS))

__all__ = ["Benchmark", "Defaults", "Option", "Splits", "TensorSplit", "build", "get", "names", "origin", "register",
           "required_weights"]
