"""Name -> method class registry, and ``build`` for specs' method names.

A spec names a single method (``rlw``) or a combination ``LOSS+GRAD``
(``rlw+cagrad``): the loss weighting is applied to the task losses, then the
gradient method aggregates the Jacobian of the weighted losses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from litmus.errors import ConfigError

from ..registry import Registry
from .base import GradientMethod, LossWeighting, Method, check_hparams

#: spec names that stand for a combination (IMTL = IMTL-L + IMTL-G, Liu et al., ICLR 2021)
ALIASES: dict[str, str] = {"imtl": "imtl_l+imtl_g"}


def _alias_hint(name: str) -> str:
    return f" ('{name}' is the combination {ALIASES[name]})" if name in ALIASES else ""


_METHODS: Registry[type[Method]] = Registry("method", (LossWeighting, GradientMethod), hint=_alias_hint)
M = TypeVar("M", bound=type[Method])


def register(cls: M) -> M:
    """Class decorator: add a method to the registry under ``cls.name``."""
    return _METHODS.register(cls)


def names(kind: str | None = None) -> list[str]:
    """Registered method names, optionally of one kind ("loss" or "grad")."""
    return _METHODS.names(None if kind is None else (lambda c: c.kind == kind))


def get(name: str) -> type[Method]:
    return _METHODS.get(name)


def origin(name: str) -> str:
    """Where a registered method comes from (litmus or a plugin module)."""
    return _METHODS.origin(name)


def takes_distribution(method: str) -> bool:
    """Whether a spec method name (``rlw``, ``rgw``, ``rlw+cagrad``) samples its weights from a named
    distribution (random weighting, Lin et al.): one of its parts has a ``distribution`` hyperparameter.

    Not the same as :attr:`Method.draws_random`, which says a method draws random numbers at all
    (PCGrad's shuffled projection order does, and takes no distribution).
    """
    return any(_part_takes_distribution(p) for p in split_name(method) if p is not None)


def _part_takes_distribution(name: str) -> bool:
    return any(p.name == "distribution" for p in get(name).hparams)


def family(method: str) -> str:
    """The family of a spec method name (Lin et al., TMLR 2022, Table 1), as the trials table records it.

    ``gradient`` for a gradient method or any ``LOSS+GRAD`` combination, ``random`` for a random
    weighting alone (a part that samples from a distribution: RLW, RGW), else ``loss``; from each
    class's kind, so a plugin method is grouped right with no list to update.
    """
    loss, grad = split_name(method)
    if "+" in ALIASES.get(method, method):
        return "gradient"
    alone = grad if grad is not None else loss
    if _part_takes_distribution(alone):
        return "random"
    return "gradient" if grad is not None else "loss"


def _generator(cls: type[Method], hp: dict[str, Any], generator: torch.Generator | None) -> torch.Generator | None:
    if not cls.draws_random:
        return None
    if generator is not None:
        return generator
    g = torch.Generator()
    g.manual_seed(int(hp.get("seed", 0)))
    return g


def build(name: str, num_tasks: int, generator: torch.Generator | None = None, **hparams: Any) -> Method:
    """Build one registered method; unknown names or hyperparameters raise ``ValueError``.

    Random methods take a ``seed`` hyperparameter, or a dedicated ``generator``
    (the trainer passes one seeded from the trial seed) that wins over it.
    """
    cls = get(name)
    hp = check_hparams(cls, hparams)
    gen = _generator(cls, hp, generator)
    if cls.draws_random:
        return cls(num_tasks, generator=gen, **hp)
    return cls(num_tasks, **hp)


@dataclass
class Pipeline:
    """What a spec method name resolves to: an optional loss weighting, then an optional gradient method."""

    name: str
    loss: LossWeighting
    grad: GradientMethod | None

    def parts(self) -> list[Method]:
        return [m for m in (self.loss, self.grad) if m is not None]


def split_name(name: str) -> tuple[str, str | None]:
    """``'rlw+cagrad'`` -> ``('rlw', 'cagrad')``; ``'cagrad'`` -> ``('ew', 'cagrad')``; ``'uw'`` -> ``('uw', None)``.

    Raises ``ValueError`` for unknown parts and for parts of the wrong family.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"method name must be a non-empty string, got {name!r}")
    name = ALIASES.get(name, name)
    parts = name.split("+")
    if len(parts) > 2:
        raise ConfigError(f"method {name!r}: a combination is LOSS+GRAD with exactly two parts")
    for p in parts:
        get(p)
    if len(parts) == 1:
        cls = get(parts[0])
        return (parts[0], None) if cls.kind == "loss" else ("ew", parts[0])
    loss, grad = parts
    if get(loss).kind != "loss" or get(grad).kind != "grad":
        raise ConfigError(
            f"method {name!r}: a combination is LOSS+GRAD, a loss weighting ({', '.join(names('loss'))}) "
            f"then a gradient method ({', '.join(names('grad'))})"
        )
    return loss, grad


def split_hparams(name: str, hparams: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route a flat hyperparameter dict to the parts of ``name``.

    A key may be prefixed with its part (``cagrad.c``) and must be when both
    parts declare it.
    """
    loss, grad = split_name(name)
    out: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    owners = [(0, get(loss))] + ([(1, get(grad))] if grad else [])
    for key, value in hparams.items():
        if "." in key:
            part, sub = key.split(".", 1)
            match = [(i, c) for i, c in owners if c.name == part]
            if not match:
                raise ConfigError(f"method {name!r}: hyperparameter {key!r} names no part of it")
            out[match[0][0]][sub] = value
            continue
        match = [(i, c) for i, c in owners if key in {p.name for p in c.hparams}]
        if len(match) > 1:
            raise ConfigError(f"method {name!r}: {key!r} belongs to several parts; write it as PART.{key}")
        if not match:
            valid = sorted({f"{c.name}.{p.name}" for _, c in owners for p in c.hparams})
            raise ConfigError(
                f"unknown hyperparameter {key!r} for method {name!r}; valid: {', '.join(valid) or 'none'}"
            )
        out[match[0][0]][key] = value
    return out


def build_pipeline(
    name: str, num_tasks: int, hparams: dict[str, Any] | None = None, generator: torch.Generator | None = None
) -> Pipeline:
    """Build what a spec's method name (single or ``LOSS+GRAD``) means."""
    loss_name, grad_name = split_name(name)
    loss_hp, grad_hp = split_hparams(name, dict(hparams or {}))
    loss = build(loss_name, num_tasks, generator=generator, **loss_hp)
    grad = build(grad_name, num_tasks, generator=generator, **grad_hp) if grad_name else None
    assert isinstance(loss, LossWeighting)
    assert grad is None or isinstance(grad, GradientMethod)
    return Pipeline(name, loss, grad)
