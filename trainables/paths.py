"""The forward and backward passes of one training step, one small class per path.

A spec method ``LOSS[+GRAD]`` (Lin et al., Algorithms 1-2) takes one of four paths:

* :class:`LossOnly` (no gradient method): ``sum_t w_t L_t`` (+ the loss weighting's own
  objective) is back-propagated through the whole model; task heads get the weighted gradients,
  as RLW's Algorithm 1 does.
* :class:`RepSpace` (``space: rep``): the rows ``d(w_t L_t)/d rep`` of the Jacobian w.r.t. the
  shared representation, one pass per task *through its own head only*; the method's direction
  is back-propagated through the encoder.
* :class:`ParamSpace` (``space: param``): the Jacobian w.r.t. the shared parameters, taken from
  the separate weighted task losses, the task parameters in the same passes (a pass from one loss
  runs through that task's part of the graph only). With a single shared representation
  (``hps``) the Jacobian's measured path decides how: looped, one ``autograd.grad`` per task over
  the shared parameters and that task's head, through the whole model (the passes a
  per-task-backward loop takes, the last one freeing the graph as it goes); batched, chained
  through the representation (``J_param = J_rep d rep/d theta``: the rows w.r.t. the
  representation one head at a time, then one batched pass through the encoder), so that each
  head is traversed once, not T times. The two give bit-identical results (tests/test_paths.py).
  The direction is written into the shared parameters' ``.grad`` as views of it (no copy, unless
  gradient clipping will change them in place).
* :class:`MultiInput`: ``ParamSpace`` on a dataset with one input batch per task.

With a gradient method each task head gets its own loss-weighted (not gradient-weighted)
gradient, as in Algorithm 2, from the passes that give the Jacobian: no path runs a second,
weighted backward pass (a loss weighting's own parameters, UW's, get their gradients from the
trainer: :meth:`~trainables.trainer.Trainer._method_objective`).
A task parameter that serves several tasks (cross-stitch's columns with ``shared: units``)
gets the sum of the tasks' gradients, equal to one pass of ``sum_t w_t L_t`` up to the order
of summation (tests/test_paths.py). The paths separate getting the Jacobian from aggregating it
(the method's ``direction``), as torchjd separates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from .batching import Batch
from .datasets.base import Benchmark
from .jacobian import Jacobian, Rows, batched_rows, flat, summed
from .weighting import GradientMethod


@dataclass
class Parts:
    """What the paths work on."""

    model: nn.Module
    bench: Benchmark
    tasks: tuple[str, ...]
    #: shared parameters (what a gradient method balances), task heads' parameters
    shared: list[nn.Parameter]
    task_params: list[nn.Parameter]
    grad: GradientMethod | None
    jacobian: Jacobian
    #: the shared parameters' ``.grad`` may be views of the method's direction (no copy): nothing
    #: changes them in place before the optimiser's step (gradient clipping does: then they are copied)
    grads_as_views: bool = True
    #: per task, its head parameters (:func:`task_heads`; filled on first use)
    heads: list[list[nn.Parameter]] | None = None


@dataclass
class Forward:
    """One forward pass: outputs, stacked losses ``[T]`` and, through the representation, its parts."""

    out: dict[str, Tensor]
    losses: Tensor
    #: the encoder's output (with its graph) and the detached leaf the heads saw
    rep: Tensor | None = None
    rep_leaf: Tensor | None = None
    #: the task losses as separate tensors (a pass from one must not run through every head)
    task_losses: list[Tensor] | None = None


def predict(p: Parts, x: Tensor, rep: Tensor | None = None) -> dict[str, Tensor]:
    """The model's outputs; a gradient method that ``transforms_rep`` (RotoGrad) maps the shared
    representation per task before that task's head."""
    if p.grad is None or not p.grad.transforms_rep:
        return p.model.decode(rep, x) if rep is not None else p.model(x)
    rep = p.model.encode(x) if rep is None else rep
    return {t: p.model.decode(p.grad.transform_rep(rep, i), x, (t,))[t] for i, t in enumerate(p.tasks)}


def task_losses(p: Parts, out: dict[str, Tensor], y: dict[str, Tensor]) -> list[Tensor]:
    return [p.bench.loss(t, out[t], y[t]) for t in p.tasks]


def plain_forward(p: Parts, batch: Batch, multi_input: bool) -> Forward:
    """Outputs and stacked losses, without keeping the representation apart."""
    if multi_input:
        outs, losses = {}, []
        for t in p.tasks:
            x, y = batch[t]
            outs[t] = p.model(x, (t,))[t]
            losses.append(p.bench.loss(t, outs[t], y[t]))
        return Forward(outs, torch.stack(losses), task_losses=losses)
    x, y = batch
    out = predict(p, x)
    losses = task_losses(p, out, y)
    return Forward(out, torch.stack(losses), task_losses=losses)


def rep_forward(p: Parts, batch: Batch) -> Forward:
    """Through the shared representation: the heads see a detached leaf of it."""
    x, y = batch
    rep = p.model.encode(x)
    leaf = rep.detach().requires_grad_(True)
    out = predict(p, x, leaf)
    losses = [loss.float() for loss in task_losses(p, out, y)]
    return Forward(out, torch.stack(losses), rep, leaf, losses)


def _rep_rows_and_head_grads(p: Parts, weighted: list[Tensor], rep: Tensor) -> Tensor:
    """Rows ``d(w_t L_t)/d rep`` and the heads' gradients, one backward pass per task *through its
    own head only*, over the representation and that task's head (the task losses are separate
    tensors, and a pass stops at ``rep``, a leaf or not: the encoder's part of the graph is not
    run, and a last pass frees only what it ran): each head is traversed once, as in EW's
    backward, instead of T times by a batched pass. With ``rep`` a leaf (the detached
    representation) the passes accumulate into ``.grad`` as a plain ``backward`` does (restricted
    to ``rep`` and that head: ~0.08 ms a step less than ``autograd.grad`` and setting the heads'
    ``.grad`` from Python, the same numbers)."""
    rows: list[Tensor] = []
    heads = task_heads(p)
    last = len(p.tasks) - 1
    if rep.is_leaf:
        for i in range(len(p.tasks)):
            rep.grad = None
            torch.autograd.backward(weighted[i], inputs=[rep] + heads[i], retain_graph=i < last)
            rows.append(rep.grad if rep.grad is not None else torch.zeros_like(rep))
        rep.grad = None
        return torch.stack(rows)
    for i in range(len(p.tasks)):
        gs = torch.autograd.grad(weighted[i], [rep] + heads[i], retain_graph=i < last, allow_unused=True)
        rows.append(gs[0] if gs[0] is not None else torch.zeros_like(rep))
        accumulate(heads[i], gs[1:])
    return torch.stack(rows)


def task_heads(p: Parts) -> list[list[nn.Parameter]]:
    """Per task, its own trainable head parameters (``model.task_parameters``), computed once. A
    single shared representation (hps) has disjoint heads that cover the task parameters; were it
    not so, every task's passes would take all of them (their gradients summed over the passes)."""
    if p.heads is None:
        heads = [[q for q in p.model.task_parameters(t) if q.requires_grad] for t in p.tasks]
        ids = [id(q) for h in heads for q in h]
        if len(ids) != len(set(ids)) or set(ids) != {id(q) for q in p.task_params}:
            heads = [list(p.task_params) for _ in p.tasks]
        p.heads = heads
    return p.heads


def _weighted(task_losses: list[Tensor], w: Tensor | None) -> list[Tensor]:
    """``w_t L_t`` as separate float tensors (``w`` None: all weights 1, the losses themselves)."""
    losses = [l if l.dtype == torch.float32 else l.float() for l in task_losses]
    return losses if w is None else [w[i].detach() * l for i, l in enumerate(losses)]


def accumulate(params: Sequence[nn.Parameter], grads: Sequence[Tensor | None]) -> None:
    """Add ``grads`` into the parameters' ``.grad`` (None: the parameter got no gradient)."""
    for param, g in zip(params, grads):
        if g is not None:
            param.grad = g if param.grad is None else param.grad + g


class LossOnly:
    """No gradient method: back-propagate the weighted sum through the whole model."""

    name = "loss"

    def __init__(self, parts: Parts, multi_input: bool) -> None:
        self.p, self.multi_input = parts, multi_input

    def forward(self, batch: Batch) -> Forward:
        return plain_forward(self.p, batch, self.multi_input)

    def backward(self, losses: Tensor, w: Tensor | None) -> None:
        """Back-propagate ``sum_t w_t L_t`` (``w`` None: every weight 1) through the model, as one pass
        from the losses with gradient ``w`` (``w`` detached): autograd would hand each loss ``1 * w_t``
        of the product, an exact product, so the gradients are the same bit for bit, without building
        the product and its sum (tests/test_paths.py)."""
        if w is None:
            losses.sum().backward()
        else:
            torch.autograd.backward(losses, w)


class GradientPath:
    """A path with a gradient method: ``jacobian`` (heads' and method's gradients as a side effect),
    then ``apply`` of the method's direction to the shared part."""

    name = ""

    def __init__(self, parts: Parts) -> None:
        self.p = parts

    def forward(self, batch: Batch) -> Forward:  # pragma: no cover - abstract
        raise NotImplementedError

    def jacobian(self, fwd: Forward, w: Tensor | None, weighted: Tensor) -> Tensor:  # pragma: no cover
        """The Jacobian of the weighted task losses (``w`` None: all weights 1, the losses as they are)."""
        raise NotImplementedError

    def apply(self, fwd: Forward, direction: Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rep_rows(self, fwd: Forward, w: Tensor | None) -> Tensor:
        assert fwd.task_losses is not None and fwd.rep_leaf is not None
        return _rep_rows_and_head_grads(self.p, _weighted(fwd.task_losses, w), fwd.rep_leaf)


class RepSpace(GradientPath):
    """Jacobian w.r.t. the shared representation; the direction goes back through the encoder."""

    name = "rep"

    def forward(self, batch: Batch) -> Forward:
        return rep_forward(self.p, batch)

    def jacobian(self, fwd: Forward, w: Tensor | None, weighted: Tensor) -> Tensor:
        jac = self._rep_rows(fwd, w)
        assert fwd.rep is not None
        self.p.grad.observe_rep(fwd.rep.detach())  # type: ignore[union-attr]
        return jac

    def apply(self, fwd: Forward, direction: Tensor) -> None:
        assert fwd.rep is not None
        fwd.rep.backward(direction if direction.dtype == fwd.rep.dtype else direction.to(fwd.rep.dtype))


class ParamSpace(GradientPath):
    """Jacobian w.r.t. the shared parameters: from per-task passes through the whole model, or
    chained through the representation when there is one and the batched path is chosen."""

    name = "param"

    def __init__(self, parts: Parts, through_rep: bool) -> None:
        super().__init__(parts)
        self.through_rep = through_rep

    def forward(self, batch: Batch) -> Forward:
        if not self.through_rep:
            return plain_forward(self.p, batch, False)
        # the heads see the representation itself (not a detached leaf): the per-task passes can run
        # through the whole model, and the chained path can still stop at the representation
        x, y = batch
        rep = self.p.model.encode(x)
        out = predict(self.p, x, rep)
        losses = [loss.float() for loss in task_losses(self.p, out, y)]
        return Forward(out, torch.stack(losses), rep, None, losses)

    def jacobian(self, fwd: Forward, w: Tensor | None, weighted: Tensor) -> Tensor:
        assert fwd.task_losses is not None
        losses = _weighted(fwd.task_losses, w)
        shared = self.p.shared
        if self.through_rep:
            assert fwd.rep is not None
            path = self.p.jacobian.path(fwd.rep, shared, len(losses))
            if path == "looped":
                # one pass per task through the whole model (the passes a per-task-backward loop takes, the
                # last freeing the graph as it goes), inputs the shared parameters and that task's head
                return self._per_task_passes(losses)
            if path == "batched":
                # the rows d(w_t L_t)/d rep (and the heads' gradients) from one pass per task through its own
                # head, then J_param = J_rep d rep/d theta in one batched pass through the encoder
                rows = _rep_rows_and_head_grads(self.p, losses, fwd.rep)
                if rows.dtype != fwd.rep.dtype:
                    rows = rows.to(fwd.rep.dtype)
                return flat(self.p.jacobian.rows(fwd.rep, shared, rows=rows, keep_graph=False), shared)
            # still measuring: both paths whole, as they run once chosen, on this step's graph
            per_row = self.p.jacobian.measure(fwd.rep, shared, len(losses), {
                "batched": lambda: self._chained_rows(losses, fwd.rep), "looped": lambda: self._direct_rows(losses, True)})
            return self._split(per_row)
        # the task losses as separate scalars: the per-task passes give the shared parameters' rows and the
        # task parameters' gradients at once (no second, weighted backward pass for the heads)
        per_row = self.p.jacobian.rows(losses, shared + self.p.task_params, keep_graph=False)
        n = len(shared)
        accumulate(self.p.task_params, [summed(per_row, n + j) for j in range(len(self.p.task_params))])
        return flat([r[:n] for r in per_row], shared)

    def _per_task_passes(self, losses: list[Tensor]) -> Tensor:
        """The ``[T, P]`` rows of the shared parameters, and each head's gradient, from one
        ``autograd.grad`` per task over the shared parameters and that task's own head (a single
        shared representation: the heads are disjoint); the last pass frees the graph."""
        return self._split(self._direct_rows(losses, False))

    def _direct_rows(self, losses: list[Tensor], retain_graph: bool) -> Rows:
        """Per task, the gradients of its loss w.r.t. the shared parameters then its head, by one pass
        through the whole model (``retain_graph=False``: the last pass frees the graph)."""
        shared, heads, last = self.p.shared, task_heads(self.p), len(losses) - 1
        return [list(torch.autograd.grad(loss, shared + heads[i], retain_graph=retain_graph or i < last,
                                         allow_unused=True)) for i, loss in enumerate(losses)]

    def _chained_rows(self, losses: list[Tensor], rep: Tensor) -> Rows:
        """:meth:`_direct_rows` chained through the representation: the rows w.r.t. ``rep`` and the
        heads' gradients one head at a time, then one batched pass through the encoder (keeps the graph)."""
        heads = task_heads(self.p)
        rep_rows, head_grads = [], []
        for i, loss in enumerate(losses):
            gs = torch.autograd.grad(loss, [rep] + heads[i], retain_graph=True, allow_unused=True)
            rep_rows.append(gs[0] if gs[0] is not None else torch.zeros_like(rep))
            head_grads.append(list(gs[1:]))
        rows = torch.stack(rep_rows)
        per_row = batched_rows(rep, self.p.shared, rows if rows.dtype == rep.dtype else rows.to(rep.dtype))
        return [r + h for r, h in zip(per_row, head_grads)]

    def _split(self, per_row: Rows) -> Tensor:
        """Rows of shared-then-head gradients: the heads' into their ``.grad``, the shared ones as ``[T, P]``."""
        n, heads = len(self.p.shared), task_heads(self.p)
        for i, row in enumerate(per_row):
            accumulate(heads[i], row[n:])
        return flat([r[:n] for r in per_row], self.p.shared)

    def apply(self, fwd: Forward, direction: Tensor) -> None:
        """Write the direction into the shared parameters' ``.grad`` as views of it, no copy (one
        contiguous copy first where the gradients may be changed in place: gradient clipping)."""
        if not self.p.grads_as_views or not direction.is_contiguous():
            direction = direction.clone(memory_format=torch.contiguous_format)
        offset = 0
        for param in self.p.shared:
            n = param.numel()
            g = direction[offset : offset + n].view_as(param)
            param.grad = g if g.dtype == param.dtype else g.to(param.dtype)
            offset += n


class MultiInput(ParamSpace):
    """Parameter space on a dataset with one input batch per task (no single shared representation)."""

    name = "multi_input"

    def __init__(self, parts: Parts) -> None:
        super().__init__(parts, through_rep=False)

    def forward(self, batch: Batch) -> Forward:
        return plain_forward(self.p, batch, True)


def select(parts: Parts, space: str | None, multi_input: bool) -> LossOnly | GradientPath:
    """The path for a method (``parts.grad``), a gradient space and a dataset."""
    if parts.grad is None:
        return LossOnly(parts, multi_input)
    if multi_input:
        return MultiInput(parts)
    if space == "rep":
        return RepSpace(parts)
    return ParamSpace(parts, through_rep=bool(parts.model.supports_rep))
