"""Per-row work on large float arrays, split over the process's cores.

After each decode the scoring code takes a log-softmax (and for KLD a divergence) over every
scored row of a 49k-262k vocabulary. numpy's ufuncs release the GIL, so contiguous row ranges on
a few threads use the cores llama.cpp computed with a moment before, instead of one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from itertools import pairwise
from typing import TypeVar

from quantgate.night.machine import available_cores

T = TypeVar("T")

#: below this many rows one thread is faster than handing work out
MIN_ROWS_PER_THREAD = 16


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=available_cores(), thread_name_prefix="quantgate-rows")


def row_map(fn: Callable[[int, int], T], n_rows: int) -> list[T]:
    """``fn(lo, hi)`` over contiguous row ranges covering ``range(n_rows)``, in order."""
    parts = max(1, min(available_cores(), n_rows // MIN_ROWS_PER_THREAD))
    bounds = [n_rows * i // parts for i in range(parts + 1)]
    if parts == 1:
        return [fn(0, n_rows)]
    futures = [_pool().submit(fn, lo, hi) for lo, hi in pairwise(bounds)]
    return [f.result() for f in futures]
