"""Multi-task architectures, one module each, registered by name."""

from __future__ import annotations

from ..registry import import_submodules
from .base import MTLModel, build, get, names, origin, register

import_submodules(__name__, __path__, skip=("base",))

__all__ = ["MTLModel", "build", "get", "names", "origin", "register"]
