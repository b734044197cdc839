"""The training loop: a plain PyTorch trainer (no Ray) that yields per-epoch metric records.

A short loop over named parts: :mod:`.batching` (seeded batches) and :mod:`.meta` (the meta
split of bi-level methods), :mod:`.paths` (one step's forward and backward: loss-only,
representation space, parameter space, multi-input), :mod:`.jacobian` (the task gradients of the
shared part), :mod:`.evaluation` (metric rows), :mod:`.optimizers`, :mod:`.checkpoint`.
Constructing a trainer raises glibc's heap trim threshold for the process (:mod:`.heap`: each step
reuses the freed pages of the last instead of faulting them in again).

A method's own parameters (UW's log-variances, IMTL-L's scales) are trained by the same optimiser
in their own parameter group. A non-finite loss stops the run with :class:`Diverged`; any other
exception propagates to the caller, which records the trial as failed.
"""

from __future__ import annotations

import math
import resource
from contextlib import nullcontext
import time
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError

from . import architectures, checkpoint, divergence, heap, weighting
from .batching import DATA_STREAM, WEIGHT_STREAM, Batch, train_batches
from .config import TrainConfig, method_hparams, model_arch, resolve
from .datasets.base import Benchmark, Splits
from .evaluation import evaluate, metric_rows
from .jacobian import Jacobian
from .meta import MetaSplit, meta_step
from .optimizers import build_optimizer, build_scheduler
from .paths import Forward, GradientPath, LossOnly, Parts, accumulate, plain_forward, predict, select
from .versions import versions

class Diverged(RuntimeError):
    """The trial diverged (trainables/divergence.py: a non-finite or exploded loss, a non-finite metric)."""

    def __init__(self, epoch: int, step: int, losses: dict[str, float], reason: str = "non-finite loss") -> None:
        self.epoch, self.step, self.losses = epoch, step, losses
        super().__init__(f"{reason} at epoch {epoch}, step {step}: {losses}")


@dataclass
class EpochResult:
    """What one finished epoch produced."""

    epoch: int
    #: one dict per (split, task, metric): split, task, metric, value, higher_is_better
    rows: list[dict[str, Any]]
    #: mean effective task weights over the epoch's steps (None for methods without weights)
    weights: dict[str, float] | None
    train_losses: dict[str, float]
    seconds: float


@dataclass
class RunStats:
    started_at: float = field(default_factory=time.time)
    step_times: list[float] = field(default_factory=list)
    device: str = "cpu"
    #: the Jacobian path chosen by measurement (gradient methods in parameter space), see :mod:`.jacobian`
    jacobian: Jacobian | None = None

    def summary(self) -> dict[str, Any]:
        peak = (torch.cuda.max_memory_allocated() / 2**20) if self.device.startswith("cuda") else (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        return {
            "wall_time_s": time.time() - self.started_at,
            "step_time_ms": 1000 * median(self.step_times) if self.step_times else float("nan"),
            "peak_memory_mb": peak,
            "device": self.device,
            "versions": versions(),
            "jacobian": self.jacobian.summary() if self.jacobian is not None else {},
        }


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return dev


class Trainer:
    """Trains one model on one benchmark with one method; iterate :meth:`epochs` for per-epoch results."""

    def __init__(self, cfg: TrainConfig, splits: Splits | None = None) -> None:
        self.cfg, self.bench = resolve(cfg)
        cfg = self.cfg
        heap.keep_freed_heap()  # each step reuses the last one's freed pages (trainables/heap.py)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.device = pick_device(cfg.device)
        self.tasks: tuple[str, ...] = tuple(self.bench.tasks)
        self.splits = splits if splits is not None else self.bench.load()
        torch.manual_seed(cfg.seed)
        self.model = architectures.build(model_arch(cfg), self.bench, **cfg.arch_options).to(self.device)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + DATA_STREAM)
        weight_gen = torch.Generator().manual_seed(cfg.seed + WEIGHT_STREAM)
        pipeline = weighting.build_pipeline(cfg.method, len(self.tasks), method_hparams(cfg), generator=weight_gen)
        for m in pipeline.parts():
            m.to(self.device)
            m.set_base_lr(cfg.lr)  # methods with their own optimiser at a ratio of the model's lr (RotoGrad)
        self.meta: MetaSplit | None = None
        if pipeline.loss.needs_meta:
            self.meta, self.splits = MetaSplit.carve(self.splits, pipeline.loss.meta_fraction, cfg.seed,
                                                     cfg.batch_size, self.device)
        self.shared = [p for p in self.model.shared_parameters() if p.requires_grad]
        shared_ids = {id(p) for p in self.shared}
        self.task_params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in shared_ids]
        self.pipeline = pipeline
        self.loss_method, self.grad_method = pipeline.loss, pipeline.grad
        #: the loss weighting's own parameters, trained by its objective (UW's log-variances); a gradient
        #: method's own parameters, if any, are in the optimiser too but get their gradients from the method
        self.method_params = self.loss_method.optimizer_params()
        self.jacobian = Jacobian(shared=True)  # a choice made in this process is kept for it
        self.parts = Parts(self.model, self.bench, self.tasks, self.shared, self.task_params,
                           self.grad_method, self.jacobian, grads_as_views=not cfg.grad_clip)
        self.path: LossOnly | GradientPath = select(self.parts, cfg.space, self.bench.multi_input)
        self.optimizer = build_optimizer(cfg, self.model, pipeline.parts())
        self.scheduler = build_scheduler(cfg, self.optimizer)
        self.epoch = 0
        self.global_step = 0
        #: the first step's losses: the divergence rule's reference (trainables/divergence.py)
        self.first_losses: Tensor | None = None
        self._limits: tuple[Tensor | None, list[float] | None] = (None, None)  # (first_losses, its step limits)
        self.stats = RunStats(device=str(self.device), jacobian=self.jacobian)
        self._amp = cfg.amp and self.device.type == "cuda"

    def _autocast(self) -> Any:
        """bfloat16 autocast with ``amp`` on CUDA; otherwise no context (a disabled autocast costs ~6 us a step)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self._amp else nullcontext()

    # --- one step -------------------------------------------------------
    def _method_objective(self, w: Tensor, losses: Tensor) -> None:
        """Gradients of the loss weighting's own objective ``sum_t w_t L_t.detach() + reg`` w.r.t. its own
        parameters (UW's log-variances, IMTL-L's scales) into their ``.grad``: the method's closed form
        (:meth:`~trainables.weighting.LossWeighting.objective_grads`, the same floats autograd forms,
        without building the objective's graph) or, a method without one, by back-propagating the
        objective through ``w``'s graph. The model's gradients come from the path, with ``w`` detached."""
        if not self.method_params:
            return
        grads = self.loss_method.objective_grads(losses.detach(), w.detach())
        if grads is None:
            obj = (w * losses.detach()).sum()
            reg = self.loss_method.regularizer()
            torch.autograd.backward(obj + reg if reg is not None else obj, inputs=self.method_params)
            return
        if len(grads) != len(self.method_params):
            raise RuntimeError(f"method {self.loss_method.name!r} gave {len(grads)} objective gradients for "
                               f"{len(self.method_params)} parameters")
        for param, g in zip(self.method_params, grads):
            if g.shape != param.shape:
                raise RuntimeError(f"method {self.loss_method.name!r} gave an objective gradient of shape "
                                   f"{tuple(g.shape)} for a parameter of shape {tuple(param.shape)}")
        accumulate(self.method_params, grads)

    def _check(self, losses: Tensor, epoch: int, step: int) -> None:
        first = self.first_losses
        if self._limits[0] is not first:  # the limits of this reference (a restored checkpoint brings its own)
            self._limits = (first, divergence.step_limits(first, self.cfg.divergence_factor))
        vals = losses.tolist()
        limits = self._limits[1]
        # the common case in a few Python operations (this runs on every step): a sum of the T float32 losses
        # in double precision is finite exactly when every loss is, and every loss is within its limit
        if first is not None and math.isfinite(sum(vals)) and (limits is None or all(map(float.__le__, vals, limits))):
            return
        reason = divergence.step_reason(losses.detach(), first, self.cfg.divergence_factor, limits)
        if reason:
            raise Diverged(epoch, step, {t: float(v) for t, v in zip(self.tasks, losses.detach().cpu())}, reason)
        if first is None:
            self.first_losses = losses.detach().clone()

    def _direction(self, jac: Tensor, weighted: Tensor, epoch: int, step: int) -> Tensor:
        """The gradient method's direction for ``jac``, checked; it sees the losses it balances
        (the loss-weighted ones in a LOSS+GRAD combination)."""
        grad_m = self.grad_method
        assert grad_m is not None
        direction = grad_m.direction(jac, weighted.detach())
        if direction.shape != jac.shape[1:]:
            raise RuntimeError(f"method {grad_m.name!r} returned a direction of shape {tuple(direction.shape)}, "
                               f"expected {tuple(jac.shape[1:])}")
        if not divergence.all_finite(direction):  # the plain sum first, exact only when it is not finite
            raise Diverged(epoch, step, {"direction": float("nan")})
        return direction

    def train_step(self, batch: Batch, epoch: int, step: int) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        """One optimisation step; returns (outputs, detached losses, effective weights or None)."""
        if self.meta is not None:
            meta_step(self.model, self.bench, self.tasks, self.loss_method, batch, self.meta.next_batch())
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            fwd: Forward = self.path.forward(batch)
        losses = fwd.losses.float()
        self._check(losses, epoch, step)
        w = self.loss_method.weights(losses.detach())
        ones = self.loss_method.always_ones  # EW: no multiplications by 1 (bit-identical without them)
        eff: Tensor | None = w.detach()
        self._method_objective(w, losses)
        if isinstance(self.path, LossOnly):
            self.path.backward(losses, None if ones else w.detach())
        else:
            weighted = losses if ones else w.detach() * losses
            jac = self.path.jacobian(fwd, None if ones else w, weighted)
            self.path.apply(fwd, self._direction(jac, weighted, epoch, step))
            gw = self.grad_method.last_weights if self.grad_method is not None else None
            if gw is None:
                eff = None
            else:
                gw = gw.detach() if gw.device == eff.device else gw.detach().to(eff.device)
                eff = gw if ones else eff * gw
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        if self.loss_method.needs_after_step:
            with torch.no_grad(), self._autocast():
                new_losses = plain_forward(self.parts, batch, self.bench.multi_input).losses
            self.loss_method.after_step(new_losses.float())
        return fwd.out, losses.detach(), eff

    # --- epochs ---------------------------------------------------------
    def train_epoch(self) -> tuple[list[dict[str, Any]], dict[str, float] | None, dict[str, float]]:
        epoch = self.epoch + 1
        self.model.train()
        accs = self.bench.accumulators()
        loss_sum = torch.zeros(len(self.tasks), dtype=torch.float64)
        w_sum: Tensor | None = None
        n = 0
        sync = self.device.type == "cuda"
        cfg = self.cfg
        for step, batch in enumerate(train_batches(self.splits.train, self.tasks, self.bench.multi_input, cfg.batch_size,
                                                   self.data_gen, self.device, cfg.num_workers), start=1):
            if cfg.max_steps_per_epoch and step > cfg.max_steps_per_epoch:
                break
            t0 = time.perf_counter()
            out, losses, eff = self.train_step(batch, epoch, step)
            if sync:
                torch.cuda.synchronize()
            self.stats.step_times.append(time.perf_counter() - t0)
            self.global_step += 1
            loss_sum += losses.double().cpu()
            if eff is not None:
                w_sum = eff.double().cpu() if w_sum is None else w_sum + eff.double().cpu()
            n += 1
            with torch.no_grad():
                for t in self.tasks:
                    target = batch[t][1][t] if self.bench.multi_input else batch[1][t]
                    accs[t].update(out[t].detach().float(), target)
        if n == 0:
            raise RuntimeError(f"dataset {cfg.dataset!r} produced no training batch")
        mean_losses = (loss_sum / n).float()
        for m in self.pipeline.parts():
            m.end_epoch(epoch, mean_losses)
        if self.scheduler is not None:
            self.scheduler.step()
        rows = metric_rows("train", self.tasks, accs, mean_losses)
        weights = {t: float(v) for t, v in zip(self.tasks, w_sum / n)} if w_sum is not None else None
        return rows, weights, {t: float(v) for t, v in zip(self.tasks, mean_losses)}

    def evaluate(self, split_name: str) -> list[dict[str, Any]]:
        return evaluate(self.model, self.bench, self.tasks, getattr(self.splits, split_name), split_name,
                        lambda x: predict(self.parts, x), self.cfg.eval_batch_size, self.device, self.cfg.num_workers, self._amp)

    def epochs(self) -> Iterator[EpochResult]:
        """Train the remaining epochs, yielding each finished epoch's results."""
        while self.epoch < self.cfg.epochs:
            t0 = time.perf_counter()
            rows, weights, train_losses = self.train_epoch()
            for split in ("val", "test"):
                if getattr(self.splits, split) is not None:
                    rows += self.evaluate(split)
            self.epoch += 1
            reason = divergence.rows_reason(rows)
            if reason:
                raise Diverged(self.epoch, 0, train_losses, reason)
            yield EpochResult(self.epoch, rows, weights, train_losses, time.perf_counter() - t0)

    # --- checkpoints ----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The trainer's state as tensors and plain data only (loads with ``torch.load(weights_only=True)``)."""
        return checkpoint.capture(self)

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into this trainer (built from the same config)."""
        checkpoint.restore(self, saved)


def run(cfg: TrainConfig) -> Iterator[EpochResult]:
    """Convenience: train ``cfg`` from scratch, yielding each epoch."""
    yield from Trainer(cfg).epochs()


__all__ = ["Benchmark", "Diverged", "EpochResult", "Trainer", "TrainConfig", "run"]
