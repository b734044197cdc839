"""Fixed task weights extracted from a finished trial (Gama & Grassi, 'Uniform Loss vs. Specialized Optimization').

Their recipe: take a method's per-epoch mean task weights, normalise each epoch's
weights to sum to one, smooth them with an exponential moving average
(``ema_1 = w_1``, ``ema_k = beta ema_{k-1} + (1 - beta) w_k``, beta 0.9) and keep
the last value. litmus returns it scaled to sum ``T`` (EW's scale; the ``fixed``
method normalises to that scale anyway), in the order the trainer wrote the tasks.

Reads only the store's ``weights/`` table (``Store.trial_weights``): no trainables import.
"""

from __future__ import annotations

import math
import os
from typing import Any

from litmus.errors import ConfigError

from .store import Store


def ema_last(per_epoch: list[list[float]], beta: float = 0.9) -> list[float]:
    """Last value of the EMA of the per-epoch weights, each epoch normalised to sum 1; result sums to ``T``."""
    if not 0.0 <= beta < 1.0:
        raise ConfigError(f"beta must be in [0, 1), got {beta}")
    if not per_epoch:
        raise ConfigError("no per-epoch weights to smooth")
    t = len(per_epoch[0])
    ema: list[float] | None = None
    for k, w in enumerate(per_epoch, start=1):
        if len(w) != t:
            raise ConfigError(f"epoch {k} has {len(w)} weights, epoch 1 has {t}")
        s = sum(w)
        if not all(math.isfinite(x) for x in w) or s <= 0:
            raise ConfigError(f"epoch {k}: weights must be finite with a positive sum, got {w}")
        n = [x / s for x in w]
        ema = n if ema is None else [beta * e + (1.0 - beta) * x for e, x in zip(ema, n)]
    assert ema is not None
    if any(x < 0 for x in ema):
        raise ConfigError(f"the smoothed weights have a negative entry ({ema}); the fixed method needs non-negative weights")
    total = sum(ema)
    return [t * x / total for x in ema]


def extract_fixed_weights(store: Store | str | os.PathLike[str], trial_id: str, beta: float = 0.9) -> list[float]:
    """Fixed weights (sum ``T``, trainer task order) from trial ``trial_id``'s recorded per-epoch weights."""
    st = store if isinstance(store, Store) else Store(store, create=False)
    per_epoch = st.trial_weights(trial_id)
    if not per_epoch:
        raise ConfigError(f"trial {trial_id!r} has no recorded weights in {st.root} "
                          "(unknown trial, or a method without per-task weights)")
    epochs = sorted(per_epoch)
    if epochs != list(range(1, len(epochs) + 1)):
        raise ConfigError(f"trial {trial_id!r}: recorded weight epochs are not 1..{len(epochs)}: {epochs}")
    tasks = list(per_epoch[epochs[0]])
    for e in epochs:
        if set(per_epoch[e]) != set(tasks):
            raise ConfigError(f"trial {trial_id!r}: epoch {e} has tasks {sorted(per_epoch[e])}, epoch 1 has {sorted(tasks)}")
    return ema_last([[per_epoch[e][t] for t in tasks] for e in epochs], beta)


def task_order(store: Store | str | os.PathLike[str], trial_id: str) -> list[str]:
    """The task names in the order of :func:`extract_fixed_weights`'s list."""
    st = store if isinstance(store, Store) else Store(store, create=False)
    per_epoch = st.trial_weights(trial_id)
    return list(per_epoch[min(per_epoch)]) if per_epoch else []


def spec_entry(weights: list[float]) -> dict[str, Any]:
    """A study-spec method entry using these weights."""
    return {"name": "fixed", "params": {"task_weights": [float(w) for w in weights]}}
