"""Vector-Jacobian products of a few stacked outputs: the task gradients of the shared part.

Per input ``p``, ``[T, *p.shape]`` with row ``i`` the gradient of ``rows[i] . outputs`` w.r.t.
``p`` (the Jacobian of a ``[T]`` output when ``rows`` is the identity). ``outputs`` may also be
a sequence of ``T`` separate scalars (the task losses, not stacked; ``rows`` is then the
identity): row ``i`` is the gradient of ``outputs[i]``, and a pass from one of them runs through
its own part of the graph only (a stacked loss vector would send zeros through every head).
Two ways to get them:

* :func:`batched`: all rows in one backward pass (``is_grads_batched``, which is torch.func's
  ``vmap`` over the backward graph, so ``torch.func.vmap(vjp)`` is the same candidate);
* :func:`looped`: one backward pass per row (``retain_graph``), the way LibMTL does it.

Which is faster depends on the model, the device, the batch shape and ``T`` (on CPU the batched
pass through a CNN encoder was measured slower than ``T`` plain passes: extra ``cat``s, batched
ReLU and convolution backward), so :class:`Jacobian` measures: for each (output shape, ``T``,
device) it runs both on the first ``trials`` calls (interleaved, the order alternating), then keeps
the faster. The two give bit-identical results on the bundled benchmarks (tested); if on some model
they did not, the choice would make results depend on timing, so the reference (batched) path is
kept and the difference recorded. An operation without a batching rule leaves only the loop.
"""

from __future__ import annotations

import time
import warnings
from statistics import median
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from litmus.errors import ConfigError



#: a ``[T]`` (or ``[*S]`` with ``rows`` ``[T, *S]``) tensor, or ``T`` separate scalars
Outputs = Tensor | Sequence[Tensor]


def _rows(outputs: Outputs, rows: Tensor | None) -> tuple[Tensor, Tensor]:
    if isinstance(outputs, Tensor):
        return outputs, (rows if rows is not None else torch.eye(outputs.shape[0], device=outputs.device,
                                                                  dtype=outputs.dtype))
    if rows is not None:
        raise ValueError("rows must be None (the identity) when the outputs are separate scalars")
    stacked = torch.stack(list(outputs))
    return stacked, torch.eye(stacked.shape[0], device=stacked.device, dtype=stacked.dtype)


def batched(outputs: Outputs, inputs: list[Tensor], rows: Tensor | None = None) -> list[Tensor | None]:
    """All rows in one backward pass (``is_grads_batched``); raises ``RuntimeError`` without a batching rule.
    None for an input that no output uses."""
    outputs, rows = _rows(outputs, rows)
    return list(torch.autograd.grad(outputs, inputs, grad_outputs=rows, is_grads_batched=True,
                                    retain_graph=True, allow_unused=True))


def looped(outputs: Outputs, inputs: list[Tensor], rows: Tensor | None = None) -> list[Tensor | None]:
    """One backward pass per row (``retain_graph``), from each separate scalar output when given so.
    None for an input that no output uses."""
    if isinstance(outputs, Tensor):
        outputs, rows = _rows(outputs, rows)
        per_row = [torch.autograd.grad(outputs, inputs, grad_outputs=rows[i], retain_graph=True, allow_unused=True)
                   for i in range(rows.shape[0])]
    else:
        if rows is not None:
            raise ValueError("rows must be None (the identity) when the outputs are separate scalars")
        per_row = [torch.autograd.grad(o, inputs, retain_graph=True, allow_unused=True) for o in outputs]
    return [None if all(r[j] is None for r in per_row) else
            torch.stack([r[j] if r[j] is not None else torch.zeros_like(p) for r in per_row])
            for j, p in enumerate(inputs)]


def dense(grads: list[Tensor | None], inputs: list[Tensor], t: int) -> list[Tensor]:
    """``grads`` with zeros ``[T, *p.shape]`` for the inputs that no output uses."""
    return [g if g is not None else torch.zeros(t, *p.shape, device=p.device, dtype=p.dtype)
            for g, p in zip(grads, inputs)]


Candidate = Callable[[Outputs, list[Tensor], Tensor | None], list[Tensor | None]]
CANDIDATES: dict[str, Candidate] = {"batched": batched, "looped": looped}
REFERENCE = "batched"


class Jacobian:
    """Task gradients by the path measured fastest for each (output shape, ``T``, device)."""

    def __init__(self, trials: int = 3, force: str | None = None) -> None:
        if force is not None and force not in CANDIDATES:
            raise ConfigError(f"unknown Jacobian path {force!r}; valid: {', '.join(CANDIDATES)}")
        #: measured calls per candidate before choosing; ``force``: one path, no measurement (tests, benchmarks)
        self.trials, self.force = trials, force
        self.chosen: dict[str, str] = {}
        self.seconds: dict[str, dict[str, list[float]]] = {}
        self.identical: dict[str, bool] = {}
        self.available = dict.fromkeys(CANDIDATES, True)

    def __call__(self, outputs: Outputs, inputs: list[Tensor], rows: Tensor | None = None) -> list[Tensor | None]:
        """Per input, ``[T, *p.shape]``; None for an input that no output uses (see :func:`dense`)."""
        if self.force is not None:
            return CANDIDATES[self.force](outputs, inputs, rows)
        if isinstance(outputs, Tensor):
            shape, t, device = tuple(outputs.shape), outputs.shape[0] if rows is None else rows.shape[0], outputs.device
        else:
            shape, t, device = (len(outputs),), len(outputs), outputs[0].device
        key = f"{shape} T={t} {device}"
        name = self.chosen.get(key)
        if name is not None and self.available[name]:
            return CANDIDATES[name](outputs, inputs, rows)
        return self._measure(key, outputs, inputs, rows)

    def _measure(self, key: str, outputs: Outputs, inputs: list[Tensor], rows: Tensor | None) -> list[Tensor | None]:
        times = self.seconds.setdefault(key, {n: [] for n in CANDIDATES})
        order = [n for n in CANDIDATES if self.available[n]]
        if len(times[order[0]]) % 2:
            order.reverse()
        device = outputs.device if isinstance(outputs, Tensor) else outputs[0].device
        sync = device.type == "cuda"
        results: dict[str, list[Tensor | None]] = {}
        for name in order:
            if sync:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            try:
                results[name] = CANDIDATES[name](outputs, inputs, rows)
            except RuntimeError as err:
                if name == "looped":
                    raise
                warnings.warn(f"batched Jacobian unavailable ({err}); using one backward pass per task", stacklevel=4)
                self.available[name] = False
                continue
            if sync:
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - t0)
        if len(results) > 1:
            same = all((a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
                       for a, b in zip(*results.values()))
            self.identical[key] = self.identical.get(key, True) and same
        usable = [n for n in CANDIDATES if self.available[n]]
        if len(usable) == 1:
            self.chosen[key] = usable[0]
        elif min(len(times[n]) for n in usable) >= self.trials:
            fastest = min(usable, key=lambda n: median(times[n]))
            self.chosen[key] = fastest if self.identical[key] else REFERENCE
        return results[REFERENCE] if REFERENCE in results else results["looped"]

    def summary(self) -> dict[str, Any]:
        """The choice per (output shape, T, device), with the measured median milliseconds of each path."""
        return {key: {"path": self.chosen.get(key, "measuring"), "identical": self.identical.get(key),
                      **{f"{n}_ms": round(1000 * median(ts), 3) for n, ts in t.items() if ts}}
                for key, t in self.seconds.items()}
