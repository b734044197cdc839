"""One trial's configuration, validated before anything expensive starts."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from litmus.errors import ConfigError

from . import architectures, datasets, divergence, weighting

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULERS = ("none", "step", "cosine")
SPACES = ("param", "rep")


@dataclass
class TrainConfig:
    """Everything that defines one training run (a trial). ``None`` means the dataset's default."""

    dataset: str
    method: str = "ew"
    arch: str = "hps"
    distribution: str | None = None
    method_params: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    arch_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    epochs: int | None = None
    batch_size: int | None = None
    eval_batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    scheduler: str | None = None
    step_size: int | None = None
    gamma: float = 0.5
    grad_clip: float | None = None
    amp: bool = False
    device: str = "auto"
    space: str | None = None
    num_threads: int | None = None
    num_workers: int = 0
    max_steps_per_epoch: int | None = None
    #: a trial has diverged when a task's training loss exceeds this multiple of its first-step loss
    #: (trainables/divergence.py); None: only non-finite losses and metrics count
    divergence_factor: float | None = 100.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        if "dataset" not in d:
            raise ConfigError("a training config needs 'dataset'")
        return cls(**d)


def _positive(name: str, value: Any, kind: type = float, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        ok = ok and int(value) == value
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} "
                          f"{'integer' if kind is int else 'number'}, got {value!r}")


def single_task(method: str) -> bool:
    """Whether a spec method name asks for one independent model per task (``stl``)."""
    return weighting.get(weighting.split_name(method)[0]).single_task


def model_arch(cfg: TrainConfig) -> str:
    """The architecture the trainer builds: ``stl`` for single-task methods (``cfg.arch`` stays as given)."""
    return "stl" if single_task(cfg.method) else cfg.arch


def method_hparams(cfg: TrainConfig) -> dict[str, Any]:
    """The method's hyperparameters with the trial's ``distribution`` folded in."""
    hp = dict(cfg.method_params)
    if cfg.distribution is not None:
        hp["distribution"] = cfg.distribution
    return hp


def resolve(cfg: TrainConfig) -> tuple[TrainConfig, "datasets.Benchmark"]:
    """Validate ``cfg``, fill the dataset's defaults, return it with the (unloaded) benchmark.

    Raises ``ValueError`` with a one-line message for any bad input.
    """
    bench = datasets.build(cfg.dataset, **cfg.dataset_options)
    arch_cls = architectures.get(cfg.arch)
    d = bench.defaults
    cfg = dataclasses.replace(
        cfg,
        method_params=dict(cfg.method_params),
        epochs=cfg.epochs if cfg.epochs is not None else d.epochs,
        batch_size=cfg.batch_size if cfg.batch_size is not None else d.batch_size,
        optimizer=cfg.optimizer or d.optimizer,
        lr=cfg.lr if cfg.lr is not None else d.lr,
        weight_decay=cfg.weight_decay if cfg.weight_decay is not None else d.weight_decay,
        scheduler=cfg.scheduler or d.scheduler or "none",
    )
    _positive("epochs", cfg.epochs, int)
    _positive("batch_size", cfg.batch_size, int)
    if cfg.eval_batch_size is None:
        cfg.eval_batch_size = max(cfg.batch_size, 256)
    _positive("eval_batch_size", cfg.eval_batch_size, int)
    _positive("lr (learning rate)", cfg.lr)
    _positive("weight_decay", cfg.weight_decay, allow_zero=True)
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or cfg.seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {cfg.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    if cfg.scheduler not in LR_SCHEDULERS:
        raise ConfigError(f"unknown scheduler {cfg.scheduler!r}; valid: {', '.join(LR_SCHEDULERS)}")
    if cfg.scheduler == "step":
        cfg.step_size = cfg.step_size or d.scheduler_options.get("step_size") or max(1, cfg.epochs // 2)
        _positive("step_size", cfg.step_size, int)
        _positive("gamma", cfg.gamma)
    if cfg.grad_clip is not None:
        _positive("grad_clip", cfg.grad_clip)
    if cfg.max_steps_per_epoch is not None:
        _positive("max_steps_per_epoch", cfg.max_steps_per_epoch, int)
    if cfg.num_threads is not None:
        _positive("num_threads", cfg.num_threads, int)
    _positive("num_workers", cfg.num_workers, int, allow_zero=True)
    divergence.check_factor(cfg.divergence_factor)
    if cfg.device not in ("auto", "cpu") and not str(cfg.device).startswith(("cuda", "mps")):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")

    # the method: names, family, hyperparameters, distribution, space
    if cfg.distribution is not None and not weighting.takes_distribution(cfg.method):
        raise ConfigError(f"distribution {cfg.distribution!r} given for method {cfg.method!r}, which takes none "
                          f"(random weighting methods: "
                          f"{', '.join(n for n in weighting.names() if weighting.takes_distribution(n))})")
    if cfg.distribution is not None:
        weighting.sampling.check_distribution(cfg.distribution)
    pipeline = weighting.build_pipeline(cfg.method, len(bench.tasks), method_hparams(cfg))
    grad = pipeline.grad
    if grad is None and cfg.space is not None:
        raise ConfigError(f"method {cfg.method!r} is a loss weighting: it has no gradient space, "
                          f"remove 'space' (gradient methods: {', '.join(weighting.names('grad'))})")
    space = None if grad is None else cfg.space or grad.default_space
    if space is not None and space not in SPACES:
        raise ConfigError(f"space must be one of {', '.join(SPACES)}, got {space!r}")
    try:
        pipeline.loss.check(arch_cls, None, bench.multi_input)
        if grad is not None:
            grad.check(arch_cls, space, bench.multi_input)
    except ValueError as e:
        raise ConfigError(f"{e} (dataset {cfg.dataset!r}, arch {cfg.arch!r})") from None
    if pipeline.loss.single_task or cfg.arch == "stl":
        # one independent model per task (architectures/stl.py): nothing shared, nothing coupled
        if grad is not None:
            raise ConfigError(f"{cfg.method!r} with one model per task: no parameter is shared, so there is nothing "
                              f"for the gradient method {grad.name!r} to balance")
        if cfg.grad_clip is not None:
            raise ConfigError("grad_clip clips the global norm of all task models together, which couples single-task "
                              "models; remove it for stl")
    cfg.space = space
    return cfg, bench
