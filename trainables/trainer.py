"""The training loop: a plain PyTorch trainer (no Ray) that yields per-epoch metric records.

One step, for a spec method ``LOSS[+GRAD]`` (Lin et al., Algorithms 1-2):

* loss weighting only: ``sum_t w_t L_t`` is back-propagated through the whole
  model (task heads get the weighted gradients, as RLW's Algorithm 1 does);
* with a gradient method: the Jacobian of the weighted losses ``w_t L_t``
  w.r.t. the shared parameters (``space: param``, one batched
  vector-Jacobian product, ``is_grads_batched``) or the shared
  representation (``space: rep``, one pass per task through its own head
  only), the method turns it into
  one direction for the shared part, and each task head gets its own
  (loss-weighted, not gradient-weighted) gradient, as in Algorithm 2.

A method's own parameters (UW's log-variances, IMTL-L's scales) are trained
by the same optimiser in their own parameter group. A non-finite loss stops
the run with :class:`Diverged`; any other exception propagates to the caller,
which records the trial as failed.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from . import architectures, state, weighting
from .config import TrainConfig, method_hparams, model_arch, resolve
from .datasets.base import Benchmark, Splits, TensorSplit
from .versions import versions

#: offsets that derive independent generators from the trial seed
_DATA_STREAM, _WEIGHT_STREAM = 1_000_003, 2_000_029
#: the held-out meta split of bi-level methods (MOML, Auto-Lambda) and its batch order
_META_STREAM = 3_000_017


def _subset(split: Any, idx: Tensor) -> Any:
    """Rows ``idx`` of a (single-input) split."""
    if isinstance(split, TensorSplit):
        return TensorSplit(split.inputs[idx], {k: v[idx] for k, v in split.targets.items()})
    return torch.utils.data.Subset(split, idx.tolist())


class Diverged(RuntimeError):
    """A task loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, losses: dict[str, float]) -> None:
        self.epoch, self.step, self.losses = epoch, step, losses
        super().__init__(f"non-finite loss at epoch {epoch}, step {step}: {losses}")


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

    def summary(self) -> dict[str, Any]:
        peak = (torch.cuda.max_memory_allocated() / 2**20) if self.device.startswith("cuda") else (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        return {
            "wall_time_s": time.time() - self.started_at,
            "step_time_ms": 1000 * statistics.median(self.step_times) if self.step_times else float("nan"),
            "peak_memory_mb": peak,
            "device": self.device,
            "versions": versions(),
        }


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return dev


def _batches(split: Any, batch_size: int, gen: torch.Generator | None, device: torch.device,
             num_workers: int = 0) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """Batches of a split; shuffled with ``gen`` (training) or in order (``gen=None``).

    In-memory splits are sliced directly; file-backed ones go through a DataLoader
    with ``num_workers`` decoding processes (the order still comes from ``gen``).
    """
    if isinstance(split, TensorSplit):
        n = len(split)
        order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
        for i in range(0, n, batch_size):
            x, y = split.batch(order[i : i + batch_size])
            yield x.to(device, non_blocking=True), {k: v.to(device, non_blocking=True) for k, v in y.items()}
        return
    loader = DataLoader(split, batch_size=batch_size, shuffle=gen is not None, generator=gen,
                        pin_memory=device.type == "cuda", num_workers=num_workers)
    for x, y in loader:
        yield x.to(device, non_blocking=True), {k: v.to(device, non_blocking=True) for k, v in y.items()}


def _num_batches(split: Any, batch_size: int) -> int:
    return math.ceil(len(split) / batch_size)


class Trainer:
    """Trains one model on one benchmark with one method; iterate :meth:`epochs` for per-epoch results."""

    def __init__(self, cfg: TrainConfig, splits: Splits | None = None) -> None:
        self.cfg, self.bench = resolve(cfg)
        cfg = self.cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.device = pick_device(cfg.device)
        self.tasks: tuple[str, ...] = tuple(self.bench.tasks)
        self.splits = splits if splits is not None else self.bench.load()
        torch.manual_seed(cfg.seed)
        self.model = architectures.build(model_arch(cfg), self.bench, **cfg.arch_options).to(self.device)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + _DATA_STREAM)
        weight_gen = torch.Generator().manual_seed(cfg.seed + _WEIGHT_STREAM)
        self.pipeline = weighting.build_pipeline(cfg.method, len(self.tasks), method_hparams(cfg), generator=weight_gen)
        self.loss_method = self.pipeline.loss.to(self.device)
        self.grad_method = self.pipeline.grad.to(self.device) if self.pipeline.grad is not None else None
        for m in self.pipeline.parts():  # methods with their own optimiser at a ratio of the model's lr (RotoGrad)
            if hasattr(m, "set_base_lr"):
                m.set_base_lr(cfg.lr)
        self.meta_split: Any = None
        if getattr(self.loss_method, "needs_meta", False):
            self._carve_meta_split()
        self.shared = [p for p in self.model.shared_parameters() if p.requires_grad]
        shared_ids = {id(p) for p in self.shared}
        self.task_params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in shared_ids]
        self.method_params = [p for m in self.pipeline.parts() for p in m.optimizer_params()]
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        self.epoch = 0
        self.global_step = 0
        self.stats = RunStats(device=str(self.device))
        self._vmap_ok = True
        self._amp = cfg.amp and self.device.type == "cuda"

    # --- setup ----------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        groups: list[dict[str, Any]] = [{"params": list(self.model.parameters())}]
        for m in self.pipeline.parts():
            ps = m.optimizer_params()
            if ps:
                groups.append({"params": ps, "lr": float(getattr(m, "lr", cfg.lr)), "weight_decay": 0.0})
        if cfg.optimizer == "adam":
            return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        cfg = self.cfg
        if cfg.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        if cfg.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cfg.epochs)
        return None

    def _carve_meta_split(self) -> None:
        """Hold out ``meta_fraction`` of the TRAINING split (a seeded permutation) as the meta data of a
        bi-level method; the model trains on the rest. Validation and test data are never touched."""
        train = self.splits.train
        n = len(train)
        k = max(1, round(n * float(self.loss_method.meta_fraction)))
        if k >= n:
            raise ValueError(f"meta_fraction {self.loss_method.meta_fraction} leaves no training data ({n} examples)")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed + _META_STREAM))
        self.meta_indices, self.train_indices = perm[:k].sort().values, perm[k:].sort().values
        self.meta_split = _subset(train, self.meta_indices)
        self.splits = Splits(train=_subset(train, self.train_indices), val=self.splits.val, test=self.splits.test)
        self.meta_gen = torch.Generator().manual_seed(self.cfg.seed + _META_STREAM + 1)
        self._meta_batches: Iterator[Any] | None = None

    def _next_meta_batch(self) -> Any:
        for _ in range(2):
            if self._meta_batches is None:
                self._meta_batches = _batches(self.meta_split, self.cfg.batch_size, self.meta_gen, self.device)
            try:
                return next(self._meta_batches)
            except StopIteration:
                self._meta_batches = None
        raise RuntimeError("the meta split produced no batch")

    def _meta_step(self, batch: Any) -> None:
        """Let a bi-level loss weighting update its weights from a one-step lookahead (functional_call)."""
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}  # BN statistics of the lookahead stay local

        def loss_fn(ps: dict[str, Tensor], b: Any) -> Tensor:
            x, y = b
            out = torch.func.functional_call(self.model, {**ps, **buffers}, (x,))
            return torch.stack([self.bench.loss(t, out[t], y[t]) for t in self.tasks]).float()

        self.loss_method.meta_step(loss_fn, params, batch, self._next_meta_batch())

    # --- one step -------------------------------------------------------
    def _predict(self, x: Tensor, rep: Tensor | None = None) -> dict[str, Tensor]:
        """The model's outputs; a gradient method with ``transform_rep`` (RotoGrad) maps the shared
        representation per task before that task's head."""
        transform = getattr(self.grad_method, "transform_rep", None)
        if transform is None:
            return self.model.decode(rep, x) if rep is not None else self.model(x)
        rep = self.model.encode(x) if rep is None else rep
        return {t: self.model.decode(transform(rep, i), x, (t,))[t] for i, t in enumerate(self.tasks)}

    def _task_losses(self, out: dict[str, Tensor], y: dict[str, Tensor]) -> list[Tensor]:
        return [self.bench.loss(t, out[t], y[t]) for t in self.tasks]

    def _forward_losses(self, x: Tensor, y: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        out = self._predict(x)
        return out, torch.stack(self._task_losses(out, y))

    def _multi_forward(self, batch: dict[str, tuple[Tensor, dict[str, Tensor]]]) -> tuple[dict[str, Tensor], Tensor]:
        outs, losses = {}, []
        for t in self.tasks:
            x, y = batch[t]
            out = self.model(x, (t,))[t]
            outs[t] = out
            losses.append(self.bench.loss(t, out, y[t]))
        return outs, torch.stack(losses)

    def _jacobian(self, outputs: Tensor, inputs: list[Tensor], rows: Tensor | None = None) -> list[Tensor]:
        """``[T, *p.shape]`` per input: the vector-Jacobian products of ``outputs`` with ``rows`` (default:
        the identity, i.e. the Jacobian of a ``[T]`` output) in one batched backward pass (one pass per
        row as fallback)."""
        if rows is None:
            t = outputs.shape[0]
            rows = torch.eye(t, device=outputs.device, dtype=outputs.dtype)
        t = rows.shape[0]
        if self._vmap_ok:
            try:
                grads = torch.autograd.grad(outputs, inputs, grad_outputs=rows, is_grads_batched=True,
                                            retain_graph=True, allow_unused=True)
                return [g if g is not None else torch.zeros(t, *p.shape, device=p.device, dtype=p.dtype)
                        for g, p in zip(grads, inputs)]
            except RuntimeError as err:  # an op without a batching rule
                warnings.warn(f"batched Jacobian unavailable ({err}); using one backward pass per task", stacklevel=2)
                self._vmap_ok = False
        per_row = [torch.autograd.grad(outputs, inputs, grad_outputs=rows[i], retain_graph=True, allow_unused=True)
                   for i in range(t)]
        return [torch.stack([r[j] if r[j] is not None else torch.zeros_like(p) for r in per_row])
                for j, p in enumerate(inputs)]

    def _rep_jacobian_and_head_grads(self, weighted: list[Tensor], rep: Tensor) -> Tensor:
        """Rows ``d(w_t L_t)/d rep`` and the heads' gradients, one backward pass per task *through its
        own head only* (the representation is a leaf here, and the task losses are separate tensors):
        each head is traversed once, as in EW's backward, instead of T times by a batched pass."""
        rows: list[Tensor] = []
        head_grads: list[Tensor | None] = [None] * len(self.task_params)
        last = len(self.tasks) - 1
        for i in range(len(self.tasks)):
            gs = torch.autograd.grad(weighted[i], [rep] + self.task_params, retain_graph=i < last, allow_unused=True)
            rows.append(gs[0] if gs[0] is not None else torch.zeros_like(rep))
            for j, g in enumerate(gs[1:]):
                if g is not None:
                    head_grads[j] = g if head_grads[j] is None else head_grads[j] + g
        for p, g in zip(self.task_params, head_grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        return torch.stack(rows)

    def _method_objective(self, w: Tensor, losses: Tensor) -> Tensor | None:
        """Objective that trains the loss weighting's own parameters (UW, IMTL-L), or None."""
        if not self.method_params:
            return None
        obj = (w * losses.detach()).sum()
        reg = self.loss_method.regularizer()
        return obj + reg if reg is not None else obj

    def _check(self, losses: Tensor, epoch: int, step: int) -> None:
        if not bool(torch.isfinite(losses).all()):
            raise Diverged(epoch, step, {t: float(v) for t, v in zip(self.tasks, losses.detach().cpu())})

    def train_step(self, batch: Any, epoch: int, step: int) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        """One optimisation step; returns (outputs, detached losses, effective weights or None)."""
        multi = self.bench.multi_input
        grad_m = self.grad_method
        if self.meta_split is not None:
            self._meta_step(batch)
        self.optimizer.zero_grad(set_to_none=True)
        rep = rep_d = None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._amp):
            if multi:
                out, losses = self._multi_forward(batch)
            elif grad_m is not None and self.model.supports_rep:
                # through the shared representation: in rep space the Jacobian is taken there; in param
                # space it is chained through the encoder (J_param = J_rep d rep / d theta, one batched
                # pass), so that each head is traversed once and not T times
                x, y = batch
                rep = self.model.encode(x)
                rep_d = rep.detach().requires_grad_(True)
                out = self._predict(x, rep_d)
                # kept apart: a backward pass from one task's loss must not run through the stack into every head
                task_losses = [loss.float() for loss in self._task_losses(out, y)]
                losses = torch.stack(task_losses)
            else:
                x, y = batch
                out, losses = self._forward_losses(x, y)
        losses = losses.float()
        self._check(losses, epoch, step)
        w = self.loss_method.weights(losses.detach())
        weighted = w.detach() * losses
        extra = self._method_objective(w, losses)
        eff: Tensor | None = w.detach()
        if grad_m is None:
            total = weighted.sum() if extra is None else weighted.sum() + extra
            total.backward()
        else:
            if rep_d is not None:
                jac = self._rep_jacobian_and_head_grads([w[i].detach() * l for i, l in enumerate(task_losses)], rep_d)
                if extra is not None:
                    torch.autograd.backward(extra, inputs=self.method_params)
                if self.cfg.space == "param":
                    jac = torch.cat([j.reshape(len(self.tasks), -1)
                                     for j in self._jacobian(rep, self.shared, rows=jac.to(rep.dtype))], dim=1)
            else:
                jac = torch.cat([j.reshape(len(self.tasks), -1) for j in self._jacobian(weighted, self.shared)], dim=1)
                head_obj = weighted.sum() if extra is None else weighted.sum() + extra
                inputs = self.task_params + self.method_params
                if inputs:
                    torch.autograd.backward(head_obj, inputs=inputs)
            if self.cfg.space == "rep" and hasattr(grad_m, "activation"):
                grad_m.activation = rep.detach()  # GradDrop's sign purity needs the representation's sign
            # the method sees the losses it balances: the loss-weighted ones in a LOSS+GRAD combination
            direction = grad_m.direction(jac, weighted.detach())
            if direction.shape != jac.shape[1:]:
                raise RuntimeError(f"method {grad_m.name!r} returned a direction of shape {tuple(direction.shape)}, "
                                   f"expected {tuple(jac.shape[1:])}")
            if not bool(torch.isfinite(direction).all()):
                raise Diverged(epoch, step, {"direction": float("nan")})
            if self.cfg.space == "rep":
                rep.backward(direction.to(rep.dtype))
            else:
                offset = 0
                for p in self.shared:
                    n = p.numel()
                    p.grad = direction[offset : offset + n].view_as(p).to(p.dtype).clone()
                    offset += n
            gw = getattr(grad_m, "last_weights", None)
            eff = eff * gw.detach().to(eff.device) if gw is not None else None
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        if self.loss_method.needs_after_step:
            with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._amp):
                _, new_losses = self._multi_forward(batch) if multi else self._forward_losses(*batch)
            self.loss_method.after_step(new_losses.float())
        return out, losses.detach(), eff

    # --- epochs ---------------------------------------------------------
    def _train_batches(self) -> Iterator[Any]:
        bs = self.cfg.batch_size
        train = self.splits.train
        if not self.bench.multi_input:
            yield from _batches(train, bs, self.data_gen, self.device, self.cfg.num_workers)
            return
        steps = max(_num_batches(s, bs) for s in train.values())
        iters = {t: _batches(train[t], bs, self.data_gen, self.device, self.cfg.num_workers) for t in self.tasks}
        for _ in range(steps):
            batch = {}
            for t in self.tasks:
                try:
                    batch[t] = next(iters[t])
                except StopIteration:
                    iters[t] = _batches(train[t], bs, self.data_gen, self.device, self.cfg.num_workers)
                    batch[t] = next(iters[t])
            yield batch

    def train_epoch(self) -> tuple[list[dict[str, Any]], dict[str, float] | None, dict[str, float]]:
        epoch = self.epoch + 1
        self.model.train()
        accs = self.bench.accumulators()
        loss_sum = torch.zeros(len(self.tasks), dtype=torch.float64)
        w_sum: Tensor | None = None
        n = 0
        sync = self.device.type == "cuda"
        for step, batch in enumerate(self._train_batches(), start=1):
            if self.cfg.max_steps_per_epoch and step > self.cfg.max_steps_per_epoch:
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
            raise RuntimeError(f"dataset {self.cfg.dataset!r} produced no training batch")
        mean_losses = (loss_sum / n).float()
        for m in self.pipeline.parts():
            m.end_epoch(epoch, mean_losses)
        if self.scheduler is not None:
            self.scheduler.step()
        rows = self._rows("train", accs, mean_losses)
        weights = {t: float(v) for t, v in zip(self.tasks, w_sum / n)} if w_sum is not None else None
        return rows, weights, {t: float(v) for t, v in zip(self.tasks, mean_losses)}

    def _rows(self, split: str, accs: dict[str, Any], losses: Tensor) -> list[dict[str, Any]]:
        rows = []
        for i, t in enumerate(self.tasks):
            rows.append({"split": split, "task": t, "metric": "loss", "value": float(losses[i]), "higher_is_better": False})
            for metric, value in accs[t].compute().items():
                rows.append({"split": split, "task": t, "metric": metric, "value": float(value),
                             "higher_is_better": bool(accs[t].directions[metric])})
        return rows

    @torch.no_grad()
    def evaluate(self, split_name: str) -> list[dict[str, Any]]:
        split = getattr(self.splits, split_name)
        self.model.eval()
        accs = self.bench.accumulators()
        loss_sum = torch.zeros(len(self.tasks), dtype=torch.float64)
        count = torch.zeros(len(self.tasks), dtype=torch.float64)
        bs = self.cfg.eval_batch_size
        per_task = split if self.bench.multi_input else {t: split for t in self.tasks}
        if self.bench.multi_input:
            for i, t in enumerate(self.tasks):
                for x, y in _batches(per_task[t], bs, None, self.device, self.cfg.num_workers):
                    out = self.model(x, (t,))[t].float()
                    loss_sum[i] += float(self.bench.loss(t, out, y[t])) * len(x)
                    count[i] += len(x)
                    accs[t].update(out, y[t])
        else:
            for x, y in _batches(split, bs, None, self.device, self.cfg.num_workers):
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._amp):
                    out = self._predict(x)
                for i, t in enumerate(self.tasks):
                    o = out[t].float()
                    loss_sum[i] += float(self.bench.loss(t, o, y[t])) * len(x)
                    count[i] += len(x)
                    accs[t].update(o, y[t])
        return self._rows(split_name, accs, (loss_sum / count.clamp_min(1)).float())

    def epochs(self) -> Iterator[EpochResult]:
        """Train the remaining epochs, yielding each finished epoch's results."""
        while self.epoch < self.cfg.epochs:
            t0 = time.perf_counter()
            rows, weights, train_losses = self.train_epoch()
            for split in ("val", "test"):
                if getattr(self.splits, split) is not None:
                    rows += self.evaluate(split)
            self.epoch += 1
            yield EpochResult(self.epoch, rows, weights, train_losses, time.perf_counter() - t0)

    # --- checkpoints ----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The trainer's state as tensors and plain data only (loads with ``torch.load(weights_only=True)``)."""
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "methods": [state.module_state(m, f"methods[{i}]") for i, m in enumerate(self.pipeline.parts())],
            "data_gen": self.data_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step_times": list(self.stats.step_times),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into this trainer (built from the same config)."""
        self.epoch = int(saved["epoch"])
        self.global_step = int(saved["global_step"])
        self.model.load_state_dict(saved["model"])
        parts = list(self.pipeline.parts())
        if len(saved["methods"]) != len(parts):
            raise state.CheckpointError(f"checkpoint has {len(saved['methods'])} method parts, "
                                        f"{self.cfg.method} has {len(parts)}")
        for i, (m, s) in enumerate(zip(parts, saved["methods"])):
            state.load_module_state(m, s, f"methods[{i}]", self.device)
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None and saved["scheduler"] is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.data_gen.set_state(saved["data_gen"])
        torch.set_rng_state(saved["torch_rng"])
        self.stats.step_times = list(saved.get("step_times", []))


def run(cfg: TrainConfig) -> Iterator[EpochResult]:
    """Convenience: train ``cfg`` from scratch, yielding each epoch."""
    yield from Trainer(cfg).epochs()


__all__ = ["Benchmark", "Diverged", "EpochResult", "Trainer", "TrainConfig", "run"]
