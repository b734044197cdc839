"""Plugins: third-party methods, datasets and architectures in litmus's own registries.

A plugin is Python code that registers classes with ``trainables.weighting.register``,
``trainables.datasets.register`` or ``trainables.architectures.register`` (the same
decorators and base classes as litmus's own). It is named by

* a module (``mypkg.methods``), imported as usual;
* a file or a package directory (``./my_method.py``, ``./mypkg``), imported from that path
  under its file or directory name;
* an entry point of an installed distribution in the groups ``litmus.methods``,
  ``litmus.datasets`` or ``litmus.architectures`` (the value is a module, whose import
  registers its classes, or a ``module:Class`` that is registered in the group's registry).

Each plugin is imported once per process; a failure (import error, wrong base class, a name
already taken by litmus or another plugin) raises :class:`PluginError` naming the plugin and
the cause. :func:`source_hashes` (recorded with each trial's versions) ties results to the
plugin code that produced them. Importing a plugin runs its code, like running a script:
name only code you trust (docs/plugins.md).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Iterable

from litmus.errors import PluginError  # noqa: F401 - part of this module's interface

ENTRY_POINT_GROUPS = ("litmus.methods", "litmus.datasets", "litmus.architectures")


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin: how it was named, the module workers import, what must travel with a Ray job."""

    ref: str  # as given (a module name, an absolute path, or "entry point NAME = VALUE")
    module: str  # the importable module name (on the driver and, with ``ship``, on every Ray worker)
    ship: str | None  # local file or package directory to send with a Ray job (None: installed code)
    source_hash: str  # sha256 of the plugin's source files


_LOADED: dict[str, Plugin] = {}  # by ref
#: the installed entry points of ENTRY_POINT_GROUPS, per ``sys.path`` (reading every distribution's metadata
#: costs ~25 ms, and every spec parse asks; a path added later, as a test's site dir, is read afresh)
_DISCOVERED: dict[tuple[str, ...], list[tuple[str, importlib.metadata.EntryPoint]]] = {}


def is_path(ref: str) -> bool:
    """A plugin reference names a file or directory (``./x.py``, ``/a/pkg``, ``x.py``), not a module."""
    return ref.endswith(".py") or "/" in ref or "\\" in ref or ref.startswith(".")


def resolve_ref(ref: str, base: Path | None = None) -> str:
    """A path reference made absolute against ``base`` (default: the current directory); module names unchanged."""
    if not isinstance(ref, str) or not ref.strip():
        raise PluginError(f"plugin must be a module name or a path, got {ref!r}")
    ref = ref.strip()
    if not is_path(ref):
        return ref
    p = Path(ref).expanduser()
    return str((p if p.is_absolute() else (base or Path.cwd()) / p).resolve())


def source_hash(path: Path) -> str:
    """sha256 over a file, or over every ``.py`` file of a package directory (relative path and bytes, sorted)."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
    else:
        for f in sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts):
            h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()[:16]


def _module_root(mod: ModuleType) -> Path | None:
    """The file of a single-file top-level module, or the directory of its top-level package."""
    top = sys.modules.get(mod.__name__.split(".")[0], mod)
    if getattr(top, "__path__", None):
        paths = list(top.__path__)
        return Path(paths[0]) if len(paths) == 1 else None
    f = getattr(top, "__file__", None)
    return Path(f) if f else None


def _installed(path: Path) -> bool:
    """Whether ``path`` is inside an installation directory (site-packages), i.e. not code to ship."""
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    return any(path.resolve().is_relative_to(Path(r).resolve()) for r in roots)


def _registered() -> dict[str, set[str]]:
    from . import architectures, datasets, weighting

    return {"method": set(weighting.names()), "dataset": set(datasets.names()),
            "architecture": set(architectures.names())}


def _import_path(ref: str) -> tuple[ModuleType, Path]:
    path = Path(ref)
    if not path.exists():
        raise PluginError(f"plugin {ref}: no such file or directory")
    if path.is_dir():
        init = path / "__init__.py"
        if not init.is_file():
            raise PluginError(f"plugin {ref}: a directory plugin must be a package (no __init__.py)")
        name, location, search = path.name, init, [str(path)]
    else:
        if path.suffix != ".py":
            raise PluginError(f"plugin {ref}: a file plugin must be a .py file")
        name, location, search = path.stem, path, None
    if not name.isidentifier():
        raise PluginError(f"plugin {ref}: {name!r} is not a valid Python module name")
    old = sys.modules.get(name)
    if old is not None:
        old_file = getattr(old, "__file__", None)
        if old_file and Path(old_file).resolve() == location.resolve():
            return old, path
        raise PluginError(f"plugin {ref}: module name {name!r} is already taken by "
                          f"{old_file or 'a built-in module'}; rename the plugin")
    spec = importlib.util.spec_from_file_location(name, location, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {ref}: cannot be imported as a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod, path


def load(refs: Iterable[str], base: Path | None = None) -> list[Plugin]:
    """Import plugins (module names or paths, relative to ``base``); each registers its classes once.

    Raises :class:`PluginError` naming the plugin for a missing file, an import error, a class that
    cannot be registered (wrong base class, name taken) or a plugin that registers nothing.
    """
    out = []
    for raw in refs:
        ref = resolve_ref(raw, base)
        if ref in _LOADED:
            out.append(_LOADED[ref])
            continue
        before = _registered()
        name = (Path(ref).stem if Path(ref).suffix == ".py" else Path(ref).name) if is_path(ref) else ref
        fresh = name not in sys.modules
        try:
            if is_path(ref):
                mod, root = _import_path(ref)
                ship: str | None = str(root)
            else:
                mod = importlib.import_module(ref)
                root = _module_root(mod)
                ship = str(root) if root is not None and not _installed(root) else None
        except PluginError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of third-party code is reported with its plugin
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise PluginError(f"plugin {raw}: import failed: {type(err).__name__}: {first}") from err
        if fresh and _registered() == before:
            if is_path(ref):
                sys.modules.pop(name, None)
            raise PluginError(f"plugin {raw}: registers no method, dataset or architecture "
                              f"(decorate its classes with trainables.weighting.register, datasets.register "
                              f"or architectures.register)")
        plugin = Plugin(ref, mod.__name__, ship, source_hash(root) if root is not None else "unknown")
        _LOADED[ref] = plugin
        out.append(plugin)
    return out


def load_entry_points() -> list[Plugin]:
    """Import every installed plugin of the ``litmus.*`` entry-point groups (each once per process)."""
    out = []
    from . import architectures, datasets, weighting

    registers = {"litmus.methods": weighting.register, "litmus.datasets": datasets.register,
                 "litmus.architectures": architectures.register}
    key = tuple(sys.path)
    if key not in _DISCOVERED:
        _DISCOVERED[key] = [(group, ep) for group in ENTRY_POINT_GROUPS
                            for ep in importlib.metadata.entry_points(group=group)]
    for group, ep in _DISCOVERED[key]:
        ref = f"entry point {ep.name} = {ep.value} ({group})"
        if ref in _LOADED:
            out.append(_LOADED[ref])
            continue
        dist = getattr(ep.dist, "name", None) or "?"
        try:
            obj = ep.load()
            if ep.attr:
                registers[group](obj)
        except Exception as err:  # noqa: BLE001 - reported with the entry point and its distribution
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise PluginError(f"plugin {ref} of distribution {dist}: {type(err).__name__}: {first}") from err
        mod = sys.modules[ep.module]
        root = _module_root(mod)
        plugin = Plugin(ref, ep.module, str(root) if root and not _installed(root) else None,
                        source_hash(root) if root is not None else "unknown")
        _LOADED[ref] = plugin
        out.append(plugin)
    return out


def activate(refs: Iterable[str] = (), base: Path | None = None) -> list[Plugin]:
    """Installed entry-point plugins, then ``refs``: everything a command or a worker needs registered."""
    return load_entry_points() + load(refs, base)


def import_modules(modules: Iterable[str]) -> None:
    """On a Ray worker: import the plugin modules shipped with the job (or installed), and the entry points."""
    load_entry_points()
    for name in modules:
        if name not in sys.modules:
            importlib.import_module(name)
        mod = sys.modules[name]
        root = _module_root(mod)
        ref = f"worker module {name}"
        if ref not in _LOADED:
            _LOADED[ref] = Plugin(ref, name, None, source_hash(root) if root is not None else "unknown")


def loaded() -> list[Plugin]:
    return list(_LOADED.values())


def source_hashes() -> dict[str, str]:
    """``module -> sha256`` of every plugin loaded in this process (recorded in each trial's versions)."""
    return {p.module: p.source_hash for p in _LOADED.values()}
