"""Benchmarks, one module each, registered by name (``build``, ``names``, ``get``)."""

from __future__ import annotations

import importlib
import pkgutil

from .base import Benchmark, Defaults, Option, Splits, TensorSplit, build, get, names, register

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base" and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["Benchmark", "Defaults", "Option", "Splits", "TensorSplit", "build", "get", "names", "register"]
