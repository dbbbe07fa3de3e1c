"""How sparse a model's linear weights are: the share of exact zeros, and the share of groups of
four consecutive input weights with at most two non-zeros (the 2:4 pattern sparse kernels run).

Pruning that silently did nothing (a recipe whose targets matched no layer, a checkpoint saved
before the mask was applied) keeps every quality gate green, so a sparse variant's footprint
gate reads its sparsity from the loaded weights (``weight_sparsity_pct``,
``weight_2of4_pct``). Works on numpy arrays and torch tensors alike (``==``, ``reshape``,
``sum`` over the last axis), so a backend counts on its own device without a copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def sparsity_of(weights: Iterable[Any]) -> dict[str, float] | None:
    """Over 2-D weight matrices ``[out, in]``: ``weight_sparsity_pct`` (zeros / all, in %) and
    ``weight_2of4_pct`` (groups of 4 along ``in`` with <= 2 non-zeros / all groups, in %; only
    matrices whose ``in`` is a multiple of 4 count). None for no matrix."""
    zeros = total = groups = groups_2of4 = 0
    for w in weights:
        zero = w == 0
        zeros += int(zero.sum())
        total += int(w.shape[0] * w.shape[1])
        if w.shape[1] % 4 == 0:
            nonzero_per_group = (~zero).reshape(-1, 4).sum(-1)
            groups += int(nonzero_per_group.shape[0])
            groups_2of4 += int((nonzero_per_group <= 2).sum())
    if total == 0:
        return None
    return {
        "weight_sparsity_pct": 100.0 * zeros / total,
        "weight_2of4_pct": 100.0 * groups_2of4 / groups if groups else 0.0,
    }
