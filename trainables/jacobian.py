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
device) it runs both on the first calls (interleaved, the order alternating; at least ``trials``,
more while the times overlap, at most ``max_trials``), then keeps the faster by the median, timed
on the thread's CPU clock where the work runs on one thread (a loaded machine does not inflate
it). A caller asks :meth:`Jacobian.path` for the choice before the passes and tells
:meth:`Jacobian.rows` when it needs no more passes through the graph (``keep_graph=False``: the
chosen path's last pass frees it, as a plain last ``backward()`` does). Where a path is more than
the rows of one output (hps in parameter space: looped, passes through the whole model; batched,
passes through each head chained into one batched pass through the encoder) the caller runs the
candidates itself in :meth:`Jacobian.measure`, timed whole. The paths hand back per-row results (:data:`Rows`) that :func:`flat` writes into one
``[T, P]`` buffer (one copy, not a stack per input then a concatenation). The two give bit-identical results on the bundled benchmarks (tested); if on some model
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


#: per row (task), per input: the row's gradient, or None where the row's output does not use the input
Rows = list[list[Tensor | None]]


def batched(outputs: Outputs, inputs: list[Tensor], rows: Tensor | None = None,
            retain_graph: bool = True) -> list[Tensor | None]:
    """All rows in one backward pass (``is_grads_batched``); raises ``RuntimeError`` without a batching rule.
    None for an input that no output uses. ``retain_graph=False`` frees the graph's buffers in the pass."""
    outputs, rows = _rows(outputs, rows)
    return list(torch.autograd.grad(outputs, inputs, grad_outputs=rows, is_grads_batched=True,
                                    retain_graph=retain_graph, allow_unused=True))


def looped(outputs: Outputs, inputs: list[Tensor], rows: Tensor | None = None) -> list[Tensor | None]:
    """One backward pass per row (``retain_graph``), from each separate scalar output when given so.
    None for an input that no output uses."""
    return stacked(looped_rows(outputs, inputs, rows), inputs)


def batched_rows(outputs: Outputs, inputs: list[Tensor], rows: Tensor | None = None,
                 retain_graph: bool = True) -> Rows:
    """:func:`batched`, per row (views of its ``[T, *p.shape]`` results, no copy)."""
    grads = batched(outputs, inputs, rows, retain_graph)
    t = next((g.shape[0] for g in grads if g is not None), 0)
    return [[None if g is None else g[i] for g in grads] for i in range(t)]


def looped_rows(outputs: Outputs, inputs: list[Tensor], rows: Tensor | None = None,
                retain_graph: bool = True) -> Rows:
    """:func:`looped`, per row as the passes return them (no stacking). ``retain_graph=False``: the
    last pass frees the graph's buffers as it goes (as a plain last ``backward()`` does)."""
    if isinstance(outputs, Tensor):
        outputs, rows = _rows(outputs, rows)
        last = rows.shape[0] - 1
        return [list(torch.autograd.grad(outputs, inputs, grad_outputs=rows[i], retain_graph=retain_graph or i < last,
                                         allow_unused=True))
                for i in range(rows.shape[0])]
    if rows is not None:
        raise ValueError("rows must be None (the identity) when the outputs are separate scalars")
    last = len(outputs) - 1
    return [list(torch.autograd.grad(o, inputs, retain_graph=retain_graph or i < last, allow_unused=True))
            for i, o in enumerate(outputs)]


def stacked(per_row: Rows, inputs: list[Tensor]) -> list[Tensor | None]:
    """Per input ``[T, *p.shape]`` (zeros in the rows that do not use it), None if no row uses it."""
    return [None if all(r[j] is None for r in per_row) else
            torch.stack([r[j] if r[j] is not None else torch.zeros_like(p) for r in per_row])
            for j, p in enumerate(inputs)]


def flat(per_row: Rows, inputs: list[Tensor]) -> Tensor:
    """The ``[T, P]`` matrix of the rows over ``inputs`` (flattened and concatenated in order; zeros
    where a row does not use an input), written row by row into one buffer: one copy of the gradients."""
    sizes = [p.numel() for p in inputs]
    dtypes = [g.dtype for r in per_row for g in r if g is not None] or [p.dtype for p in inputs]
    dtype = dtypes[0]
    for d in dtypes[1:]:
        dtype = torch.promote_types(dtype, d)
    out = torch.empty(len(per_row), sum(sizes), dtype=dtype, device=inputs[0].device)
    for i, row in enumerate(per_row):
        if all(g is not None for g in row):
            torch.cat([g.reshape(-1) for g in row], out=out[i])
            continue
        offset = 0
        for g, n in zip(row, sizes):
            if g is None:
                out[i, offset:offset + n].zero_()
            else:
                out[i, offset:offset + n].copy_(g.reshape(-1))
            offset += n
    return out


def summed(per_row: Rows, j: int) -> Tensor | None:
    """Input ``j``'s gradient summed over the rows that use it (None if none does)."""
    gs = [r[j] for r in per_row if r[j] is not None]
    if len(gs) <= 1:
        return gs[0] if gs else None
    return torch.stack(gs).sum(0)


def dense(grads: list[Tensor | None], inputs: list[Tensor], t: int) -> list[Tensor]:
    """``grads`` with zeros ``[T, *p.shape]`` for the inputs that no output uses."""
    return [g if g is not None else torch.zeros(t, *p.shape, device=p.device, dtype=p.dtype)
            for g, p in zip(grads, inputs)]


def _same(a: Tensor | None, b: Tensor | None) -> bool:
    """Equal gradients, None standing for zeros (a row that does not use an input)."""
    if a is None or b is None:
        other = b if a is None else a
        return other is None or not bool(other.any())
    return torch.equal(a, b)


Candidate = Callable[[Outputs, list[Tensor], Tensor | None], list[Tensor | None]]
CANDIDATES: dict[str, Candidate] = {"batched": batched, "looped": looped}
#: the same candidates, per row (what :class:`Jacobian` runs)
ROW_CANDIDATES: dict[str, Callable[[Outputs, list[Tensor], Tensor | None], Rows]] = {
    "batched": batched_rows, "looped": looped_rows}
REFERENCE = "batched"


def _clock(device: torch.device) -> tuple[Callable[[], float], str]:
    """The calling thread's CPU time when the work runs on it alone (CPU, one torch thread: the
    passes' own cost, which other jobs on a shared machine do not inflate), else the wall clock."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time, "thread cpu"
    return time.perf_counter, "wall"


#: choices made in this process, per (input shapes, output shape, T, device, threads): a later
#: :class:`Jacobian` with ``shared=True`` (every trainer's) takes them without measuring again
_PROCESS_CHOICES: dict[tuple, dict[str, Any]] = {}


class Jacobian:
    """Task gradients by the path measured fastest for each (output shape, ``T``, device).

    Each candidate is timed on at least ``trials`` calls (both run on every measured call,
    interleaved, the order alternating). The choice is made once the samples separate (every time
    of the faster path below every time of the other) or after ``max_trials`` calls, by the median,
    and kept for that key. On CPU with one torch thread the clock is the thread's CPU time (robust
    to a loaded machine), otherwise the wall clock. With ``shared`` the choice is also kept for the
    process: a later trainer of the same shapes (the next trial in a reused Ray actor, the other
    methods of a benchmark) takes it without measuring (its summary says ``"measured": false``), so
    every method of a process trains on the same path."""

    def __init__(self, trials: int = 3, force: str | None = None, max_trials: int = 9,
                 clock: Callable[[], float] | None = None, shared: bool = False) -> None:
        if force is not None and force not in CANDIDATES:
            raise ConfigError(f"unknown Jacobian path {force!r}; valid: {', '.join(CANDIDATES)}")
        #: measured calls per candidate before choosing; ``force``: one path, no measurement (tests, benchmarks)
        self.trials, self.force, self.max_trials = trials, force, max(max_trials, trials)
        #: a clock to time the candidates with instead of :func:`_clock`'s choice (tests)
        self.clock = clock
        self.chosen: dict[str, str] = {}
        self.seconds: dict[str, dict[str, list[float]]] = {}
        self.identical: dict[str, bool] = {}
        self.clocks: dict[str, str] = {}
        self.available = dict.fromkeys(CANDIDATES, True)
        self.shared = shared
        #: keys whose choice came from an earlier trainer in this process
        self.adopted: set[str] = set()
        self._process_keys: dict[str, tuple] = {}

    def __call__(self, outputs: Outputs, inputs: list[Tensor], rows: Tensor | None = None) -> list[Tensor | None]:
        """Per input, ``[T, *p.shape]``; None for an input that no output uses (see :func:`dense`)."""
        return stacked(self.rows(outputs, inputs, rows), inputs)

    def settled(self) -> bool:
        """Whether every key seen so far has its path chosen (no more measured calls)."""
        return self.force is not None or all(k in self.chosen for k in self.seconds)

    def path(self, outputs: Outputs, inputs: list[Tensor], t: int | None = None) -> str | None:
        """The path :meth:`rows` takes for these arguments (``t``: the number of rows, default the
        outputs' count), or None while it is still measuring. A choice made earlier in the process
        is adopted here (``shared``)."""
        if self.force is not None:
            return self.force
        key = self._key(outputs, t)
        name = self.chosen.get(key)
        if name is None and self.shared:
            name = self._adopt(key, self._process_key(outputs, inputs, t))
        return name if name is not None and self.available[name] else None

    def rows(self, outputs: Outputs, inputs: list[Tensor], rows: Tensor | None = None, keep_graph: bool = True) -> Rows:
        """Per row, per input (see :data:`Rows`, :func:`flat`, :func:`summed`). ``keep_graph=False``:
        the caller needs no more passes through the graph, so the chosen path frees it as it goes
        (measured calls keep it: both candidates run on it)."""
        name = self.path(outputs, inputs, None if rows is None else rows.shape[0])
        if name is not None:
            if keep_graph:
                return ROW_CANDIDATES[name](outputs, inputs, rows)
            return ROW_CANDIDATES[name](outputs, inputs, rows, retain_graph=False)
        return self._measure(self._key(outputs, None if rows is None else rows.shape[0]), outputs, inputs, rows)

    @staticmethod
    def _key(outputs: Outputs, t: int | None) -> str:
        """The choice's key: output shape, number of rows, device."""
        if isinstance(outputs, Tensor):
            return f"{tuple(outputs.shape)} T={outputs.shape[0] if t is None else t} {outputs.device}"
        return f"{(len(outputs),)} T={len(outputs)} {outputs[0].device}"

    @staticmethod
    def _process_key(outputs: Outputs, inputs: list[Tensor], t: int | None) -> tuple:
        """The key of a choice kept for the process: the input shapes and the thread count too."""
        if isinstance(outputs, Tensor):
            shape, t, device = tuple(outputs.shape), outputs.shape[0] if t is None else t, outputs.device
        else:
            shape, t, device = (len(outputs),), len(outputs), outputs[0].device
        return tuple(tuple(p.shape) for p in inputs), shape, t, str(device), torch.get_num_threads()

    def _adopt(self, key: str, process_key: tuple) -> str | None:
        """The process's earlier choice for ``process_key``, taken over with its measurements, or None."""
        self._process_keys[key] = process_key
        earlier = _PROCESS_CHOICES.get(process_key)
        if earlier is None or key in self.seconds:
            return None
        self.chosen[key] = earlier["path"]
        self.seconds[key] = {n: list(ts) for n, ts in earlier["seconds"].items()}
        self.identical[key], self.clocks[key] = earlier["identical"], earlier["clock"]
        self.adopted.add(key)
        return earlier["path"]

    def _measure(self, key: str, outputs: Outputs, inputs: list[Tensor], rows: Tensor | None) -> Rows:
        return self._measure_runners(key, {n: (lambda n=n: ROW_CANDIDATES[n](outputs, inputs, rows)) for n in CANDIDATES},
                                     outputs)

    def measure(self, outputs: Outputs, inputs: list[Tensor], t: int | None, runners: dict[str, Callable[[], Rows]]) -> Rows:
        """A measured call where the caller runs the candidates itself (``runners``: per path name, a
        call without side effects that returns its :data:`Rows`, each able to run on the same graph
        after the other), keyed like :meth:`rows` on ``outputs``, ``inputs`` and ``t``: the choice is
        made by the same rule, and :meth:`path` then returns it. Returns the reference's rows (the
        batched path's) as :meth:`rows` does. Used where a path runs more than the rows of
        ``outputs`` (hps in parameter space: looped passes through the whole model, batched chained
        through the representation)."""
        key = self._key(outputs, t)
        if self.shared and key not in self._process_keys:
            self._process_keys[key] = self._process_key(outputs, inputs, t)
        return self._measure_runners(key, runners, outputs)

    def _measure_runners(self, key: str, runners: dict[str, Callable[[], Rows]], outputs: Outputs) -> Rows:
        times = self.seconds.setdefault(key, {n: [] for n in CANDIDATES})
        order = [n for n in CANDIDATES if self.available[n]]
        if len(times[order[0]]) % 2:
            order.reverse()
        device = outputs.device if isinstance(outputs, Tensor) else outputs[0].device
        sync = device.type == "cuda"
        clock, self.clocks[key] = (self.clock, "given") if self.clock is not None else _clock(device)
        results: dict[str, Rows] = {}
        for name in order:
            if sync:
                torch.cuda.synchronize(device)
            t0 = clock()
            try:
                results[name] = runners[name]()
            except RuntimeError as err:
                if name == "looped":
                    raise
                warnings.warn(f"batched Jacobian unavailable ({err}); using one backward pass per task", stacklevel=4)
                self.available[name] = False
                continue
            if sync:
                torch.cuda.synchronize(device)
            times[name].append(clock() - t0)
        if len(results) > 1:
            same = all(_same(a, b) for ra, rb in zip(*results.values()) for a, b in zip(ra, rb))
            self.identical[key] = self.identical.get(key, True) and same
        usable = [n for n in CANDIDATES if self.available[n]]
        if len(usable) == 1:
            self.chosen[key] = usable[0]
        elif min(len(times[n]) for n in usable) >= self.trials:
            fastest = min(usable, key=lambda n: median(times[n]))
            apart = all(max(times[fastest]) < min(times[n]) for n in usable if n != fastest)
            if apart or min(len(times[n]) for n in usable) >= self.max_trials:
                self.chosen[key] = fastest if self.identical[key] else REFERENCE
        if key in self.chosen and key in self._process_keys:
            _PROCESS_CHOICES[self._process_keys[key]] = {
                "path": self.chosen[key], "seconds": times, "identical": self.identical.get(key),
                "clock": self.clocks.get(key)}
        return results[REFERENCE] if REFERENCE in results else results["looped"]

    def summary(self) -> dict[str, Any]:
        """The choice per (output shape, T, device), with the measured median milliseconds of each path."""
        return {key: {"path": self.chosen.get(key, "measuring"), "identical": self.identical.get(key),
                      "clock": self.clocks.get(key), "calls": min((len(ts) for ts in t.values() if ts), default=0),
                      "measured": key not in self.adopted,
                      **{f"{n}_ms": round(1000 * median(ts), 3) for n, ts in t.items() if ts}}
                for key, t in self.seconds.items()}
