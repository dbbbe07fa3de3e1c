"""Shards of a night, in process: a bad shard, the deterministic cost-balanced split, the plan."""

from __future__ import annotations

import pytest

from quantgate.errors import ConfigError
from quantgate.night.shards import expected_cost, parse_shard, split


@pytest.mark.parametrize(
    ("text", "message"),
    [("2", "expected K/N"), ("a/b", "expected K/N"), ("0/3", "between 1 and N"), ("4/3", "got 4")],
)
def test_a_bad_shard_is_an_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_shard(text)


def test_the_split_partitions_deterministically_and_balances_by_cost():
    units = [f"m-{c}" for c in "abcdefg"]
    parts = split(units, 3)
    assert split(reversed(units), 3) == parts  # the same on every machine
    assert sorted(u for p in parts for u in p) == sorted(units)
    assert sorted(map(len, parts)) == [2, 2, 3]  # no timings: equal counts
    # with timings: the longest first, each to the least loaded part (Graham's LPT)
    timings = {"m-a": 10.0, "m-b": 9.0, "m-c": 2.0, "m-d": 2.0, "m-e": 1.0}
    parts = split(["m-a", "m-b", "m-c", "m-d", "m-e"], 2, timings)
    assert parts == [["m-a", "m-d"], ["m-b", "m-c", "m-e"]]  # a | b, c | d | e
    assert [expected_cost(p, timings) for p in parts] == [12.0, 12.0]
    # an untimed unit costs the median of the timed ones, over the whole selection
    assert expected_cost(["m-a", "m-new"], {"m-a": 4.0}) == 8.0
    assert expected_cost(["m-new"], {"m-a": 4.0}, among=["m-a", "m-new"]) == 4.0


def test_the_plan_sizes_the_shards_for_a_budget():
    from quantgate.night.shards import shards_needed

    timings = {"a": 120.0, "b": 100.0, "c": 90.0}
    assert shards_needed(["a", "b", "c", "d"], timings, 200) == 3  # d costs the median, 100
    assert shards_needed(["a", "b", "c"], timings, 400) == 1
    assert shards_needed(["a", "b"], timings, 110) is None  # a alone exceeds it
