"""Pair-granular shards for a night spread over machines: ``--shard K/N`` runs the K-th of N
deterministic parts of the selected work, each part a whole (model, compression) pair (its
tests share the variant's files and results) or a model's noise floor.

The split is the longest-processing-time rule (Graham, 1969: within 4/3 of the best makespan):
units sorted by expected cost, largest first, each to the part with the least cost so far, ties
by part number. The cost of a unit is its wall time in a previous summary.json's
``wall_seconds`` (``--shard-timings``); a unit that file does not time costs the median of those
it does, and with no timings every unit costs 1 (equal counts). Every shard computes the same
split from the same selection, so N machines need no coordinator.

Not pytest-split or pytest-shard: they split test ids (a pair's tests would land on several
machines, each loading the model), and pytest-split balances by per-test durations from its own
file rather than by the pair times the summary already records.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path

from quantgate.errors import ConfigError

#: what each shard writes beside its reports (python -m quantgate.night.merge reads it)
SHARD_FILE = "shard.json"
#: the unit of a model's noise-floor test (it has no compression; its rows' pair id)
NOISE_FLOOR_SUFFIX = "-noise_floor"
#: the unit of a model's baselines test (tests/test_baselines.py): it records no summary row,
#: its junit outcome alone says whether it ran
BASELINES_SUFFIX = "-baselines"


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), 1 <= K <= N.

    Raises:
        ConfigError: anything else, with the form expected.
    """
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected K/N, e.g. --shard 1/4") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {text!r}: K must be between 1 and N (got {k} of {n})")
    return k, n


def load_timings(path: Path) -> dict[str, float]:
    """The ``wall_seconds`` of a previous summary.json (pair id -> seconds).

    Raises:
        ConfigError: the file is missing or is not a quantgate summary.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        timings = doc["wall_seconds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"--shard-timings {path}: not a quantgate summary.json with wall_seconds ({exc}); "
            "pass the summary.json of an earlier run"
        ) from None
    return {str(k): float(v) for k, v in timings.items()}


def costs(units: Iterable[str], timings: dict[str, float] | None = None) -> dict[str, float]:
    """Each unit's expected seconds: its time in ``timings``, else the median of the timed
    units; 1 for every unit when none is timed (equal counts)."""
    unique = sorted(set(units))
    timings = timings or {}
    known = [timings[u] for u in unique if u in timings]
    default = statistics.median(known) if known else 1.0
    return {u: timings.get(u, default) for u in unique}


def split(units: Iterable[str], n: int, timings: dict[str, float] | None = None) -> list[list[str]]:
    """The N parts of ``units`` (each part sorted), balanced by expected cost."""
    cost = costs(units, timings)
    parts: list[list[str]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for unit in sorted(cost, key=lambda u: (-cost[u], u)):
        i = min(range(n), key=lambda j: (loads[j], j))
        parts[i].append(unit)
        loads[i] += cost[unit]
    return [sorted(p) for p in parts]


def expected_cost(
    part: Iterable[str], timings: dict[str, float], among: Iterable[str] | None = None
) -> float:
    """Seconds ``part`` is expected to take; an untimed unit costs the median over ``among``
    (the whole selection; default: the part itself). 0 when nothing is timed."""
    part = sorted(set(part))
    if not any(u in timings for u in (among or part)):
        return 0.0
    cost = costs([*part, *(among or [])], timings)
    return sum(cost[u] for u in part)


def shards_needed(units: Iterable[str], timings: dict[str, float], budget: float) -> int | None:
    """The fewest shards whose every part (split above) fits ``budget`` seconds; None when one
    unit alone exceeds it (more shards cannot help: a pair runs on one machine)."""
    unique = sorted(set(units))
    if not unique:
        return 0
    cost = costs(unique, timings)
    if max(cost.values()) > budget:
        return None
    for n in range(1, len(unique) + 1):
        if max(sum(cost[u] for u in p) for p in split(unique, n, timings)) <= budget:
            return n
    return len(unique)


def plan_table(units: Iterable[str], timings: dict[str, float], budget: float | None) -> str:
    """The plan of a night: each unit's expected seconds (from ``timings``; untimed ones at
    the median, marked), the total, and the shards a time budget needs."""
    unique = sorted(set(units))
    known = any(u in timings for u in unique)
    cost = costs(unique, timings)
    lines = ["| pair | expected seconds | from |", "|---|---|---|"]
    for u in unique:
        shown = f"{cost[u]:.0f}" if known else "—"
        lines.append(f"| {u} | {shown} | {'last summary' if u in timings else 'median'} |")
    total = expected_cost(unique, timings)
    lines.append(f"| **{len(unique)} pairs** | {total:.0f} | |")
    if budget is not None:
        if not known:
            lines.append("no timings (--shard-timings): shards cannot be sized; equal counts")
        elif (n := shards_needed(unique, timings, budget)) is None:
            lines.append(f"one pair alone exceeds the budget of {budget:.0f} s")
        else:
            lines.append(f"a budget of {budget:.0f} s per shard needs --shard K/{n}")
    return "\n".join(lines)
