"""Checkpoint state as tensors and plain data only, so it loads with ``torch.load(weights_only=True)``.

A checkpoint never holds objects: a method's state (its parameters, buffers,
EMAs, step counters, random generators, own optimisers, replay buffers) is
read from the live object into nested dicts/lists of tensors, numbers and
strings, and written back into a freshly built object of the same config.
Nothing in a checkpoint names a class or a function, so loading one cannot
execute code (``weights_only=True`` refuses any pickle that would).

An attribute of a type this module does not know is an error, never silently
dropped; an attribute that is derived from the others (a solver's compiled
problem) is listed in its class's ``derived_state`` and rebuilt by its
``after_load_state`` hook.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import torch
from torch import nn

from litmus.errors import CheckpointError  # noqa: F401 - part of this module's interface

#: nn.Module bookkeeping that is not state (hooks, the submodule/parameter/buffer tables handled below)
_MODULE_INTERNALS = frozenset({"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "training",
                               "_state_dict_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks",
                               "_load_state_dict_post_hooks", "_forward_hooks", "_forward_hooks_with_kwargs",
                               "_forward_hooks_always_called", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
                               "_backward_hooks", "_backward_pre_hooks", "_is_full_backward_hook",
                               "_compiled_call_impl"})
_KIND = "__litmus_state__"
#: packages whose plain Python objects (no __slots__, state in __dict__) may be walked into
_WALKABLE = ("trainables.", "torchjd.")


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dt, torch.dtype):
        raise CheckpointError(f"unknown dtype {name!r} in a checkpoint")
    return dt


def encode(value: Any, where: str) -> Any:
    """``value`` as tensors and plain data (raises :class:`CheckpointError` for anything else)."""
    if isinstance(value, np.generic):  # np.float64 is also a float: keep a plain Python number
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, (list, tuple)):
        items = [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else {_KIND: "tuple", "items": items}
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, (str, int))]
        if bad:
            raise CheckpointError(f"cannot checkpoint {where}: key {bad[0]!r} is not a string or an integer")
        return {_KIND: "dict", "items": {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if isinstance(value, torch.Generator):
        return {_KIND: "generator", "state": value.get_state()}
    if isinstance(value, torch.optim.Optimizer):
        return {_KIND: "optimizer", "state": value.state_dict()}
    if isinstance(value, torch.dtype):
        return {_KIND: "dtype", "name": str(value)}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise CheckpointError(f"cannot checkpoint {where}: a numpy array of Python objects")
        return {_KIND: "ndarray", "data": torch.from_numpy(np.array(value, copy=True)), "shape": list(value.shape)}
    if isinstance(value, nn.Module):
        raise CheckpointError(f"cannot checkpoint {where}: a module outside its parent's submodules")
    if type(value).__module__.startswith(_WALKABLE) and hasattr(value, "__dict__"):
        return {_KIND: "object", "type": type(value).__qualname__, "vars": _object_vars(value, where)}
    raise CheckpointError(f"cannot checkpoint {where}: {type(value).__module__}.{type(value).__qualname__} is not "
                          "tensors or plain data (list it in its class's derived_state if it is rebuilt)")


def _object_vars(obj: Any, where: str) -> dict[str, Any]:
    derived = set(getattr(type(obj), "derived_state", ()))
    skip = _MODULE_INTERNALS if isinstance(obj, nn.Module) else frozenset()
    return {k: encode(v, f"{where}.{k}") for k, v in vars(obj).items() if k not in skip and k not in derived}


def decode(value: Any, current: Any, where: str) -> Any:
    """The live value for encoded ``value``; generators, optimisers and objects are restored into ``current``."""
    if isinstance(value, list):
        cur = current if isinstance(current, list) and len(current) == len(value) else [None] * len(value)
        return [decode(v, c, f"{where}[{i}]") for i, (v, c) in enumerate(zip(value, cur))]
    if not isinstance(value, dict):
        return value
    kind = value.get(_KIND)
    if kind == "tuple":
        items = value["items"]
        cur = current if isinstance(current, tuple) and len(current) == len(items) else (None,) * len(items)
        return tuple(decode(v, c, f"{where}[{i}]") for i, (v, c) in enumerate(zip(items, cur)))
    if kind == "dict":
        cur = current if isinstance(current, dict) else {}
        return {k: decode(v, cur.get(k), f"{where}[{k!r}]") for k, v in value["items"].items()}
    if kind == "dtype":
        return _dtype(value["name"])
    if kind == "ndarray":
        return value["data"].numpy().reshape(value["shape"]).copy()
    if kind in ("generator", "optimizer", "object") and current is None:
        raise CheckpointError(f"checkpoint holds a {kind} at {where} where the freshly built object has none")
    if kind == "generator":
        current.set_state(value["state"])
        return current
    if kind == "optimizer":
        current.load_state_dict(value["state"])
        return current
    if kind == "object":
        if type(current).__qualname__ != value["type"]:
            raise CheckpointError(f"checkpoint holds a {value['type']} at {where}, the object is a "
                                  f"{type(current).__qualname__}")
        _restore_vars(current, value["vars"], where)
        return current
    raise CheckpointError(f"unknown entry at {where} in a checkpoint")


def _restore_vars(obj: Any, saved: dict[str, Any], where: str) -> None:
    for k, v in saved.items():
        cur = vars(obj).get(k)
        new = decode(v, cur, f"{where}.{k}")
        if isinstance(new, torch.Tensor) and isinstance(cur, torch.Tensor):
            new = new.to(cur.device)
        object.__setattr__(obj, k, new)


def module_state(module: nn.Module, where: str = "method") -> dict[str, Any]:
    """Parameters, buffers and every other attribute of ``module`` and its submodules, as plain data."""
    out: dict[str, Any] = {}
    for name, mod in module.named_modules():
        path = f"{where}.{name}" if name else where
        out[name] = {
            "parameters": {k: (p.detach().clone() if p is not None else None) for k, p in mod._parameters.items()},
            "buffers": {k: b for k, b in mod._buffers.items()},
            "vars": _object_vars(mod, path),
        }
    return out


def load_module_state(module: nn.Module, state: dict[str, Any], where: str = "method",
                      device: torch.device | str = "cpu") -> None:
    """Restore :func:`module_state` into ``module`` (built from the same config); parameters keep their identity,
    so optimisers that hold them stay valid. A module whose parameters are created lazily (RotoGrad's rotations)
    creates them on ``device`` in its ``before_load_state(parameters, device)`` hook."""
    for name, mod in module.named_modules():
        hook = getattr(mod, "before_load_state", None)
        if callable(hook) and name in state:
            hook(state[name]["parameters"], torch.device(device))
    mods = dict(module.named_modules())
    for name in state:
        if name not in mods:
            raise CheckpointError(f"checkpoint has a submodule {where}.{name} that the method does not have")
    for name, mod in mods.items():
        if name not in state:
            raise CheckpointError(f"checkpoint lacks the submodule {where}.{name}")
        saved = state[name]
        with torch.no_grad():  # parameters first: they exist before an optimiser's state is loaded
            for k, t in saved["parameters"].items():
                p = mod._parameters.get(k)
                if t is None or p is None or p.shape != t.shape:
                    raise CheckpointError(f"checkpoint parameter {where}.{name}.{k} does not fit the method")
                p.copy_(t.to(p.device))
        for k, b in saved["buffers"].items():
            cur = mod._buffers.get(k)
            mod._buffers[k] = b.to(cur.device) if isinstance(b, torch.Tensor) and cur is not None else b
    for name, mod in mods.items():  # then plain attributes (own optimisers refer to the parameters above)
        _restore_vars(mod, state[name]["vars"], f"{where}.{name}" if name else where)
    for mod in mods.values():
        hook = getattr(mod, "after_load_state", None)
        if callable(hook):
            hook()


def save(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a plain-data state with ``torch.save``."""
    torch.save(state, path)


def load(path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a file that needs more than tensors and plain data is refused."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"refused checkpoint {path}: it holds more than tensors and plain data, "
                              f"so it is not loaded ({first})") from None
