"""A benchmark's random subset of a stated fraction: the sampler alone, and through lm-eval on
the real SmolLM2 (a group: each subtask's own subset, scored as chosen)."""

from __future__ import annotations

import os

import pytest

from quantgate.registry import Benchmark, load_registry
from quantgate.retention import chosen_items, run_benchmark
from quantgate.session import GateSession
from quantgate.subsets import subset
from quantgate.thresholds import Thresholds

from .helpers import REPO


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


@pytest.mark.real_model
def test_a_group_s_fraction_scores_each_subtask_s_subset(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path))  # scored here, not read from a cache
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    session = GateSession(registry, Thresholds(REPO / "thresholds", registry), os.cpu_count())
    bench = Benchmark(task="agieval_en_smoke", metric="acc_norm", fraction=0.1, subset_seed=3)
    tasks = session.task_index()
    chosen = chosen_items(bench, tasks, "t")
    assert {k: len(v) for k, v in chosen.items()} == {
        "agieval_aqua_rat_smoke": 4,
        "agieval_lsat_ar_smoke": 4,
        "agieval_sat_math_smoke": 4,
    }
    result = run_benchmark(session.baseline_backend("smollm2"), "agieval_en", bench, tasks, "t")
    session.close()
    assert result.n_items == 12
    assert sorted(it["doc_id"] for it in result.items) == sorted(
        f"{task}/{i}" for task, ids in chosen.items() for i in ids
    )
    assert set(result.subtasks) == set(chosen)
