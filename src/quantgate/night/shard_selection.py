"""Which tests a shard runs (``--shard K/N``): each gate test's unit (its pair, or its model's
noise floor or baselines), the units split by their expected cost (quantgate.night.shards),
and shard.json, which the merge reads to name what a missing shard held."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantgate.artifacts.cache import write_text_atomic
from quantgate.configuration.registry import Pair
from quantgate.night.shards import (
    BASELINES_SUFFIX,
    NOISE_FLOOR_SUFFIX,
    SHARD_FILE,
    expected_cost,
    split,
)


def subject(item: pytest.Item) -> tuple[Pair | None, str | None]:
    """A gate test's pair and model key; (None, key) for a noise floor; else (None, None)."""
    params = getattr(item, "callspec", None) and item.callspec.params
    if not params:
        return None, None
    pair, key = params.get("pair"), params.get("model_key")
    if isinstance(pair, Pair):
        return pair, pair.model_key
    return None, key if isinstance(key, str) else None


def model_of(item: pytest.Item) -> str | None:
    """The model key a collected test runs (its pair's, or the noise floor's model_key)."""
    return subject(item)[1]


def unit_of(item: pytest.Item) -> str | None:
    """The shard unit a gate test belongs to: its pair, or its model's noise floor or
    baselines."""
    pair, model = subject(item)
    if pair is not None:
        return pair.id
    if model is None:
        return None
    floor = item.get_closest_marker("noise_floor") is not None
    return f"{model}{NOISE_FLOOR_SUFFIX if floor else BASELINES_SUFFIX}"


class ShardSelector:
    """--shard K/N: keeps the K-th part of the selected units (quantgate.night.shards) and writes
    shard.json, which python -m quantgate.night.merge reads to name what a missing shard held."""

    def __init__(self, k: int, n: int, timings: dict[str, float], reports: Path) -> None:
        self.k, self.n, self.timings, self.reports = k, n, timings, reports

    @pytest.hookimpl(trylast=True)  # after -m, -k and --deselect: split what will run
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]):
        units = {u for u in map(unit_of, items) if u is not None}
        parts = split(units, self.n, self.timings)
        mine = set(parts[self.k - 1])
        # a test of no unit (a plain test beside the gate) runs in the first shard only
        keep = [i for i in items if (u := unit_of(i)) in mine or (u is None and self.k == 1)]
        dropped = [i for i in items if i not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        manifest = {
            "shard": self.k,
            "of": self.n,
            "parts": parts,
            "expected_seconds": [expected_cost(p, self.timings, among=units) for p in parts],
        }
        self.reports.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.reports / SHARD_FILE, json.dumps(manifest, indent=2) + "\n")
