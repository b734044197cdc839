"""Permutation tests of a mean difference for many comparisons at once, in bounded memory.

Paired designs use the sign-flip test of the mean difference; independent ones
the two-sample test of the difference of means (Good, "Permutation, Parametric
and Bootstrap Tests of Hypotheses", 2005). All 2^n sign patterns (or C(n+m, n)
splits) are enumerated when there are at most ``n_resamples`` of them (exact
p); otherwise ``n_resamples`` random arrangements are drawn, shared by every
comparison of the block, and p = (b + 1) / (R + 1) (Phipson & Smyth 2010).
Random arrangements come in fixed pages of ``PAGE`` resamples, page k drawn
from ``(seed, k)``, so a p-value depends on the seed and the data only: not
on the chunk sizes, on ``max_elements`` or on how many other comparisons share
the call. Comparisons and resamples are processed in chunks so that no
intermediate array holds more than ``max_elements`` floats, whatever the
number of seeds or comparisons. Results equal scipy's ``permutation_test`` (tested).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

MAX_ELEMENTS = 4_000_000
PAGE = 256  # random resamples drawn together from one (seed, page) stream


def _chunks(g: int, n: int, max_elements: int) -> tuple[int, int]:
    """(comparisons, resamples) per chunk: the [rows, cols] null matrix and the [cols, n] arrangements stay
    within ``max_elements`` (cols a multiple of ``PAGE``; only beyond max_elements / PAGE seeds does one
    page of arrangements exceed it)."""
    rows = max(1, min(g, max_elements // max(n, PAGE)))
    cols = max(PAGE, min(max_elements // rows, max_elements // max(n, 1)) // PAGE * PAGE)
    return rows, cols


def _pages(seed: int, a: int, b: int, draw) -> np.ndarray:
    """Rows a..b-1 of the random arrangements: page k = ``draw(np.random.default_rng([seed, k]))`` [PAGE, ...]."""
    first, last = a // PAGE, (b - 1) // PAGE
    out = np.concatenate([draw(np.random.default_rng([seed, k])) for k in range(first, last + 1)])
    return out[a - first * PAGE:b - first * PAGE]


def _count(null_fn, observed: np.ndarray, n_null: int, chunk_rows: int, alternative: str) -> np.ndarray:
    """Counts of null statistics at least as extreme as ``observed`` (scipy's relative tolerance)."""
    eps = 1e-14
    gamma = np.abs(eps * observed)
    ge = np.zeros(len(observed))
    le = np.zeros(len(observed))
    for start in range(0, n_null, chunk_rows):
        null = null_fn(start, min(n_null, start + chunk_rows))  # [G, b]
        if alternative in ("greater", "two-sided"):
            ge += (null >= (observed - gamma)[:, None]).sum(axis=1)
        if alternative in ("less", "two-sided"):
            le += (null <= (observed + gamma)[:, None]).sum(axis=1)
    return ge, le


def _finish(ge: np.ndarray, le: np.ndarray, n_null: int, exact: bool, alternative: str) -> np.ndarray:
    if exact:
        pg, pl = ge / n_null, le / n_null
    else:
        pg, pl = (ge + 1) / (n_null + 1), (le + 1) / (n_null + 1)
    if alternative == "greater":
        return pg
    if alternative == "less":
        return pl
    return np.minimum(1.0, 2 * np.minimum(pg, pl))


def sign_flip(d: np.ndarray, n_resamples: int = 9999, rng: np.random.Generator | None = None,
              alternative: str = "two-sided", max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    """p-values of the sign-flip test of mean(d) = 0 for each row of ``d`` [G, n] (paired differences)."""
    d = np.atleast_2d(np.asarray(d, float))
    g_all, n = d.shape
    rng = rng if rng is not None else np.random.default_rng(0)
    exact = 2 ** n <= n_resamples
    n_null = 2 ** n if exact else n_resamples
    out = np.empty(g_all)
    rows, cols = _chunks(g_all, n, max_elements)
    if not exact:
        signs_seed = int(rng.integers(2 ** 63))
    for g0 in range(0, g_all, rows):
        block = d[g0:g0 + rows]
        observed = block.mean(axis=1)

        def null(a: int, b: int, block=block) -> np.ndarray:
            if exact:
                idx = np.arange(a, b)[:, None]
                s = 1.0 - 2.0 * ((idx >> np.arange(n)[None, :]) & 1)  # [b - a, n]
            else:  # resample i depends only on (seed, i)
                s = _pages(signs_seed, a, b, lambda r: r.choice([-1.0, 1.0], size=(PAGE, n)))
            return block @ s.T / n

        ge, le = _count(null, observed, n_null, cols, alternative)
        out[g0:g0 + rows] = _finish(ge, le, n_null, exact, alternative)
    return out


def two_sample(x: np.ndarray, y: np.ndarray, n_resamples: int = 9999, rng: np.random.Generator | None = None,
               alternative: str = "two-sided", max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    """p-values of the two-sample permutation test of mean(x) - mean(y) for rows of x [G, n], y [G, m]."""
    x = np.atleast_2d(np.asarray(x, float))
    y = np.atleast_2d(np.asarray(y, float))
    n, m = x.shape[1], y.shape[1]
    z = np.concatenate([x, y], axis=1)
    total = n + m
    rng = rng if rng is not None else np.random.default_rng(0)
    combos = math.comb(total, n)
    exact = combos <= n_resamples
    n_null = combos if exact else n_resamples
    if exact:
        member = np.zeros((combos, total))
        for i, c in enumerate(itertools.combinations(range(total), n)):
            member[i, list(c)] = 1.0
    else:
        perm_seed = int(rng.integers(2 ** 63))
    out = np.empty(len(z))
    rows, cols = _chunks(len(z), total, max_elements)
    s = z.sum(axis=1)
    for g0 in range(0, len(z), rows):
        block = z[g0:g0 + rows]
        sb = s[g0:g0 + rows]
        observed = x[g0:g0 + rows].mean(axis=1) - y[g0:g0 + rows].mean(axis=1)

        def null(a: int, b: int, block=block, sb=sb) -> np.ndarray:
            if exact:
                mem = member[a:b]
            else:  # resample i depends only on (seed, i)
                idx = _pages(perm_seed, a, b, lambda r: np.argsort(r.random((PAGE, total)), axis=1)[:, :n])
                mem = np.zeros((b - a, total))
                np.put_along_axis(mem, idx, 1.0, axis=1)
            first = block @ mem.T  # [G, b] sums of the n "method" positions
            return first / n - (sb[:, None] - first) / m

        ge, le = _count(null, observed, n_null, cols, alternative)
        out[g0:g0 + rows] = _finish(ge, le, n_null, exact, alternative)
    return out
