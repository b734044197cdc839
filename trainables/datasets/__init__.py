"""Benchmarks, one module each, registered by name (``build``, ``names``, ``get``).

Modules run as commands (``python -m trainables.datasets.make_splits``) are not imported here, so running them
does not warn that they are already in ``sys.modules``."""

from __future__ import annotations

import importlib
import pkgutil

from .base import Benchmark, Defaults, Option, Splits, TensorSplit, build, get, names, register, required_weights

COMMANDS = ("make_splits", "convert_qm9")

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in ("base", *COMMANDS) and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["Benchmark", "Defaults", "Option", "Splits", "TensorSplit", "build", "get", "names", "register",
           "required_weights"]
