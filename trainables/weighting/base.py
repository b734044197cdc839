"""Method contracts shared by every weighting method.

Two families (docs/design.md):

* :class:`LossWeighting`: task losses -> effective loss weights ``[T]``.
  The trainer's objective is ``sum_t w_t * L_t`` (+ the method's own
  regulariser). ``weights`` returns the *effective* weights on the raw
  losses, i.e. the factor in front of ``grad L_t`` in the update, so a
  method defined on transformed losses (log losses, geometric mean) reports
  ``w_t * f'(L_t)``. Scale convention: EW has weights 1 (sum ``T``); methods
  defined on the simplex are multiplied by ``T`` so that switching between
  methods does not change the effective learning rate.
* :class:`GradientMethod`: a Jacobian ``[T, P]`` of the task losses with
  respect to the shared parameters (or the shared representation) plus the
  losses -> one update direction ``[P]``.

Each method declares its hyperparameters as :class:`HParam` with the paper's
default and an Optuna search range. Every optional capability the trainer uses is
declared here with a no-op default (as Optuna's ``BaseSampler`` declares its hooks),
so neither the trainer nor the config probes methods with ``getattr``:

* all methods: :meth:`Method.check` (which architectures, spaces and datasets the
  method supports), :attr:`Method.single_task`, :attr:`Method.lr` (learning rate of
  :meth:`Method.optimizer_params`), :meth:`Method.set_base_lr`, :meth:`Method.end_epoch`;
* loss weightings: :attr:`LossWeighting.needs_meta` / :attr:`LossWeighting.meta_fraction` /
  :meth:`LossWeighting.meta_step` (bi-level methods), :attr:`LossWeighting.needs_after_step` /
  :meth:`LossWeighting.after_step` (FAMO), :meth:`LossWeighting.regularizer` /
  :meth:`LossWeighting.objective_grads` (the own parameters' objective: UW, IMTL-L);
* gradient methods: :attr:`GradientMethod.transforms_rep` / :meth:`GradientMethod.transform_rep`
  (RotoGrad), :meth:`GradientMethod.observe_rep` (GradDrop's activation sign).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Sequence

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..architectures.base import MTLModel

Kind = Literal["float", "int", "categorical", "bool"]
#: ``loss_fn(params, batch) -> [T] losses`` of the model called with ``params`` (bi-level methods)
LossFn = Callable[[dict[str, Tensor], object], Tensor]


@dataclass(frozen=True)
class HParam:
    """A method hyperparameter: default from the paper plus a search space."""

    name: str
    default: Any
    kind: Kind = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    tunable: bool = True
    help: str = ""

    def validate(self, value: Any, method: str) -> Any:
        """Return ``value`` coerced to this parameter's type or raise ``ValueError``."""
        where = f"{method}.{self.name}"
        if self.kind == "categorical":
            if self.choices is not None and value not in self.choices:
                raise ConfigError(f"{where} must be one of {list(self.choices)}, got {value!r}")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if self.kind == "int":
            if int(value) != value:
                raise ConfigError(f"{where} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{where} must be finite, got {value!r}")
        return value

    def search_space(self) -> dict[str, Any]:
        """JSON-able description of the Optuna search space."""
        if self.kind == "categorical" or self.kind == "bool":
            choices = self.choices if self.choices is not None else (False, True)
            return {"type": "categorical", "choices": list(choices)}
        return {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}


class Method(nn.Module):
    """Common part of loss-weighting and gradient methods."""

    name: ClassVar[str] = ""
    kind: ClassVar[Literal["loss", "grad"]] = "loss"
    paper: ClassVar[str] = ""
    hparams: ClassVar[tuple[HParam, ...]] = ()
    #: whether the method draws random numbers (PCGrad's order, RLW's weights): it takes a seeded generator.
    #: Random *weighting* (a weight distribution) is ``weighting.takes_distribution``, a different thing.
    draws_random: ClassVar[bool] = False
    #: True if the method trains one independent model per task (STL): the config builds arch ``stl``
    single_task: ClassVar[bool] = False
    #: learning rate of :meth:`optimizer_params` in the trainer's optimiser (None: the model's)
    lr: float | None = None

    def __init__(self, num_tasks: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ConfigError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks = num_tasks
        self.generator = generator

    @classmethod
    def check(cls, arch: type["MTLModel"], space: str | None, multi_input: bool = False) -> None:
        """Raise ``ValueError`` (one line) if the method cannot train architecture ``arch`` in ``space``
        (None for loss weightings) on a dataset with one training set per task (``multi_input``)."""
        if cls.single_task and arch.name not in ("hps", "stl"):
            raise ConfigError(f"method {cls.name!r} trains one hps-style model per task; use arch hps or stl, "
                              f"not {arch.name!r}")

    def set_base_lr(self, lr: float) -> None:
        """Hook: the model's learning rate, for methods with their own optimiser at a ratio of it (RotoGrad)."""

    def end_epoch(self, epoch: int, mean_losses: Tensor) -> None:
        """Hook called by the trainer after each epoch with the mean training losses."""

    def optimizer_params(self) -> list[nn.Parameter]:
        """Parameters the trainer's optimiser trains (group learning rate ``self.lr``).

        Methods that train their own parameters themselves (FAMO, GradNorm)
        return an empty list.
        """
        return list(self.parameters())

    def extra_repr(self) -> str:
        return ", ".join(f"{p.name}={getattr(self, p.name, p.default)!r}" for p in self.hparams)


class LossWeighting(Method):
    """Task losses ``[T]`` -> effective loss weights ``[T]``."""

    kind = "loss"
    #: the mean weight per task at unit losses (the scale convention: EW's is 1, so simplex methods are
    #: multiplied by T); a method whose paper fixes another scale says so here (UW's 1/(2 sigma^2) starts at 1/2)
    unit_weight: ClassVar[float] = 1.0
    #: True if :meth:`weights` always returns ones (EW): the trainer then leaves out its multiplications
    #: of the losses by the weights (``x * 1 == x`` exactly, so the results are bit-identical)
    always_ones: ClassVar[bool] = False
    #: True if the method needs the losses on the same batch after the update (FAMO)
    needs_after_step: ClassVar[bool] = False
    #: True if the method updates its weights from a held-out meta split (:meth:`meta_step`)
    needs_meta: ClassVar[bool] = False
    #: fraction of the training split the trainer holds out as meta data when ``needs_meta``
    meta_fraction: float = 0.0

    @classmethod
    def check(cls, arch: type["MTLModel"], space: str | None, multi_input: bool = False) -> None:
        super().check(arch, space, multi_input)
        if cls.needs_meta and multi_input:
            raise ConfigError(f"{cls.name!r} needs a meta split of one training set; a multi-input dataset has one "
                              "per task (not supported)")

    def meta_step(self, loss_fn: LossFn, params: dict[str, Tensor], train_batch: object, meta_batch: object) -> None:
        """Hook (``needs_meta``): update the weights from a lookahead of the model on a meta batch."""

    def weights(self, losses: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Effective weights for (detached) ``losses``; may require grad w.r.t. the method's own parameters."""
        raise NotImplementedError

    def regularizer(self) -> Tensor | None:
        """Extra objective term for the method's own parameters (UW's ``sum s/2``), or None."""
        return None

    def objective_grads(self, losses: Tensor, w: Tensor) -> list[Tensor] | None:
        """Hook: the gradients of the method's own objective ``sum_t w_t L_t + regularizer()`` w.r.t.
        :meth:`optimizer_params`, in closed form, given the detached ``losses`` and ``w = weights(losses)``
        (detached); None (the default): the trainer back-propagates the objective through ``w``'s graph."""
        return None

    def after_step(self, new_losses: Tensor) -> None:
        """Hook with the losses recomputed on the same batch after the model update."""


class GradientMethod(Method):
    """Jacobian ``[T, P]`` and losses ``[T]`` -> one update direction ``[P]``."""

    kind = "grad"
    #: spaces the method can work in: "param" (shared parameters) and/or "rep" (shared representation)
    spaces: ClassVar[tuple[str, ...]] = ("param",)
    #: default space when the spec does not say
    default_space: ClassVar[str] = "param"

    #: True if task heads see :meth:`transform_rep` of the shared representation (RotoGrad)
    transforms_rep: ClassVar[bool] = False

    @classmethod
    def check(cls, arch: type["MTLModel"], space: str | None, multi_input: bool = False) -> None:
        super().check(arch, space, multi_input)
        if space not in cls.spaces:
            raise ConfigError(f"method {cls.name!r} cannot work in {space!r} space; it supports: {', '.join(cls.spaces)}")
        if space == "rep" and not arch.supports_rep:
            raise ConfigError(f"{cls.name!r} in rep space needs a single shared representation; architecture "
                              f"{arch.name!r} has none (use hps, or space: param)")
        if space == "rep" and multi_input:
            raise ConfigError("rep space is not supported on a multi-input dataset (one input per task); "
                              "use space: param")
        if cls.transforms_rep and not arch.supports_rep:
            raise ConfigError(f"{cls.name!r} transforms the shared representation; architecture {arch.name!r} has none")

    def direction(self, jacobian: Tensor, losses: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def transform_rep(self, rep: Tensor, task_index: int) -> Tensor:
        """Task ``task_index``'s view of the shared representation (used only when ``transforms_rep``)."""
        return rep

    def observe_rep(self, rep: Tensor) -> None:
        """Hook (rep space): the detached shared representation of the step, before :meth:`direction`."""

    #: the weights used for the last direction (for logging), if the method has them
    last_weights: Tensor | None = None


@dataclass
class MethodInfo:
    """Registry entry."""

    name: str
    cls: type[Method]
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def kind(self) -> str:
        return self.cls.kind


def check_hparams(cls: type[Method], given: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and validate ``given`` against ``cls.hparams``."""
    known = {p.name: p for p in cls.hparams}
    unknown = sorted(set(given) - set(known))
    if unknown:
        valid = ", ".join(sorted(known)) or "none"
        raise ConfigError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for method '{cls.name}'; valid: {valid}"
        )
    out = {}
    for name, p in known.items():
        out[name] = p.validate(given[name], cls.name) if name in given else p.default
    return out


def as_list(x: Sequence[float] | Tensor) -> list[float]:
    return [float(v) for v in (x.tolist() if isinstance(x, Tensor) else x)]
