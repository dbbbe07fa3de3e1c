"""A benchmark's random subset of a stated fraction: the sampler alone."""

from __future__ import annotations

import pytest

from quantgate.configuration.registry import Benchmark
from quantgate.configuration.subsets import subset


def test_a_fraction_is_a_fixed_seeded_random_subset():
    half = subset(1000, 0.5, seed=7)
    assert len(half) == 500 and half == sorted(set(half)) and half == subset(1000, 0.5, seed=7)
    assert half != list(range(500))  # random, not the first items
    assert half != subset(1000, 0.5, seed=8)
    assert subset(1000, 0.5, seed=7, task="a") != subset(1000, 0.5, seed=7, task="b")
    # a smaller fraction's items are a part of a larger one's (cached items carry over)
    assert set(subset(1000, 0.1, seed=7)) <= set(half)
    assert subset(3, 0.1, seed=0) != [] and subset(0, 0.5, seed=0) == []
    assert subset(10, 1.0, seed=3) == list(range(10))
    # the rough share of each half of the range: not biased toward either end
    assert 200 < sum(i < 500 for i in half) < 300


def test_limit_and_fraction_are_exclusive():
    with pytest.raises(ValueError, match=r"give limit .* or fraction .*, not both"):
        Benchmark(task="t", metric="acc", limit=10, fraction=0.5)
    with pytest.raises(ValueError):
        Benchmark(task="t", metric="acc", fraction=1.5)
