"""A group's fraction through lm-eval on the real SmolLM2: each subtask's own subset, scored as
chosen."""

from __future__ import annotations

import os

import pytest

from quantgate.configuration.registry import Benchmark, load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.evaluation.retention import chosen_items, run_benchmark
from quantgate.session import GateSession
from support.helpers import REPO


@pytest.mark.real_model
def test_a_group_s_fraction_scores_each_subtask_s_subset(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path))  # scored here, not read from a cache
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    session = GateSession(registry, Thresholds(REPO / "thresholds", registry), os.cpu_count())
    bench = Benchmark(task="agieval_en_smoke", metric="acc_norm", fraction=0.1, subset_seed=3)
    tasks = session.retention.task_index()
    chosen = chosen_items(bench, tasks, "t")
    assert {k: len(v) for k, v in chosen.items()} == {
        "agieval_aqua_rat_smoke": 4,
        "agieval_lsat_ar_smoke": 4,
        "agieval_sat_math_smoke": 4,
    }
    result = run_benchmark(
        session.loading.baseline_backend("smollm2"), "agieval_en", bench, tasks, "t"
    )
    session.close()
    assert result.n_items == 12
    assert sorted(it["doc_id"] for it in result.items) == sorted(
        f"{task}/{i}" for task, ids in chosen.items() for i in ids
    )
    assert set(result.subtasks) == set(chosen)
