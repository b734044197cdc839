"""Keep the training step's freed host memory in the process (glibc), so the next step reuses its pages.

PyTorch allocates CPU tensors with ``malloc`` and has no caching allocator on the host. glibc's
``free`` gives the top of the heap back to the kernel once more than ``M_TRIM_THRESHOLD`` bytes are
free there (its dynamic default: twice the largest freed ``mmap`` chunk, at most 64 MiB), and the next
step's activations then fault those pages in again, zero-filled by the kernel. Whether a step
crosses that threshold depends on the order of its allocations: measured on multi_digits (batch
128, one thread), litmus's parameter-space step took 600-1,000 minor page faults per step and a
per-task-backward step in the same process none, 4-5 % of the step's CPU time (the
``bench/step_cost.py`` gap of issue 17). With the trim threshold raised, both take none.

:func:`keep_freed_heap` sets ``M_MMAP_THRESHOLD`` to :data:`MMAP_THRESHOLD` (the ceiling the dynamic
threshold grows to: allocations above it are still ``mmap``ed and returned at once) and
``M_TRIM_THRESHOLD`` to :data:`TRIM_THRESHOLD`: up to that much free memory at the heap's top stays
in the process. It is process-wide and idempotent; the :class:`~trainables.trainer.Trainer` calls it.
Other C libraries (musl, macOS) are left alone.

:func:`release_freed_heap` is the other way round, for a long-lived process that does not train (the
study's driver): ``malloc_trim(0)`` returns the pages of free chunks anywhere in glibc's arenas, not
only at a heap's top, to the kernel. A driver that ran thousands of trials holds free chunks scattered
between live ones (Ray's core worker and Tune allocate from many threads, each with its arena):
measured, ~12 KB per finished trial that only a trim gives back (issue 13, docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import warnings

#: ``mallopt`` parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: the largest value glibc accepts for ``M_MMAP_THRESHOLD`` on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``)
MMAP_THRESHOLD = 32 * 2**20
#: free memory at the heap's top kept for reuse
TRIM_THRESHOLD = 512 * 2**20

_done: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def keep_freed_heap() -> bool:
    """Raise glibc's trim (and fix its mmap) threshold once per process; False where that does not apply."""
    global _done
    if _done is not None:
        return _done
    _done = False
    libc = _glibc()
    if libc is None:
        return _done
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    if not ok:  # not an error: training is only slower
        warnings.warn("glibc's mallopt refused litmus's heap thresholds; steps may page-fault more", stacklevel=2)
    _done = ok
    return _done


def release_freed_heap() -> bool:
    """Return the pages of glibc's free chunks to the kernel (``malloc_trim(0)``); False where that does not
    apply or nothing was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
