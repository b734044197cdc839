"""One name -> class registry for methods, datasets and architectures, and the one import loop that fills it.

Each registry keeps where every class came from (litmus itself or a plugin,
``trainables/plugins.py``), so a name registered twice is refused with both
origins named, and a registered class must derive from the registry's base
class (a plugin cannot register something the trainer cannot use).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterable, TypeVar

from litmus.errors import RegistryError  # noqa: F401 - part of this module's interface
from litmus.errors import ConfigError

C = TypeVar("C", bound=type)


def origin_of(cls: type) -> str:
    """Where a class comes from, as users read it: ``litmus (trainables.weighting.ew)`` or its plugin module and file."""
    module = cls.__module__
    if module == "trainables" or module.startswith("trainables."):
        return f"litmus ({module})"
    import sys

    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    return f"plugin module {module}" + (f" ({path})" if path else "")


class Registry(Generic[C]):
    """Classes of ``base`` (a class or a tuple of classes) registered under their ``name`` attribute.

    Unknown names raise a ``ValueError`` listing the valid ones (plus ``hint(name)`` if given).
    """

    def __init__(self, kind: str, base: type | tuple[type, ...], hint: Callable[[str], str] | None = None) -> None:
        self.kind = kind
        self.base = base
        self.hint = hint
        self._classes: dict[str, C] = {}

    def register(self, cls: C) -> C:
        """Class decorator: add ``cls`` under ``cls.name``; refuses a wrong base class or a taken name."""
        if not isinstance(cls, type) or not issubclass(cls, self.base):
            what = getattr(cls, "__qualname__", repr(cls))
            bases = self.base if isinstance(self.base, tuple) else (self.base,)
            raise RegistryError(f"{self.kind} {what} from {origin_of(cls) if isinstance(cls, type) else '?'} "
                                f"is not a subclass of {' or '.join(b.__module__ + '.' + b.__qualname__ for b in bases)}")
        name = getattr(cls, "name", "")
        if not name or not isinstance(name, str):
            raise RegistryError(f"{self.kind} class {cls.__qualname__} from {origin_of(cls)} has no registry name "
                                f"(set the class attribute `name`)")
        old = self._classes.get(name)
        if old is not None and old is not cls and not _same_definition(old, cls):
            raise RegistryError(f"{self.kind} name {name!r} is taken: {cls.__qualname__} from {origin_of(cls)} "
                                f"clashes with {old.__qualname__} from {origin_of(old)}")
        self._classes[name] = cls
        return cls

    def names(self, where: Callable[[C], bool] | None = None) -> list[str]:
        return sorted(n for n, c in self._classes.items() if where is None or where(c))

    def get(self, name: str) -> C:
        if name not in self._classes:
            extra = self.hint(name) if self.hint else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{extra}; valid: {', '.join(self.names())}")
        return self._classes[name]

    def origin(self, name: str) -> str:
        return origin_of(self.get(name))

    def __contains__(self, name: object) -> bool:
        return name in self._classes


def _same_definition(a: type, b: type) -> bool:
    """The same class defined again (its module re-imported, e.g. a plugin file loaded by two calls)."""
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__


def import_submodules(package: str, path: Iterable[str], skip: Iterable[str] = ()) -> None:
    """Import every public module of a package (``__path__``), so that their ``@register`` decorators run."""
    skipped = set(skip)
    for m in pkgutil.iter_modules(path):
        if m.name not in skipped and not m.name.startswith("_"):
            importlib.import_module(f"{package}.{m.name}")
