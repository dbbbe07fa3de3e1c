"""A benchmark's random subset of a stated fraction (Study B's 50 % MMLU and 10 % BBH).

A seeded permutation of each task's items, its first ``round(fraction * n)`` taken: the same
seed and fraction give the same items on every machine and every run, and a smaller fraction's
items are a part of a larger one's (a 10 % run's items are in the 50 % run's, so cached
per-item results carry over). A group's subtasks each get their own permutation, seeded by the
seed and the subtask's name, and the same fraction of their items.

Pure numpy: unit-tested on its own.
"""

from __future__ import annotations

import zlib

import numpy as np


def subset(n_items: int, fraction: float, seed: int, task: str = "") -> list[int]:
    """Sorted item indices in ``range(n_items)``: at least one item when there are any."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} is not in (0, 1]")
    if n_items == 0:
        return []
    k = max(1, round(fraction * n_items))
    order = np.random.default_rng([seed, zlib.crc32(task.encode())]).permutation(n_items)
    return sorted(int(i) for i in order[:k])
