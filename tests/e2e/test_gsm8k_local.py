"""The local GSM8K (fixtures/tasks/gsm8k_smoke.yaml: lm-eval's gsm8k, 5-shot, greedy generation
until "Question:", exact_match behind its strict-match and flexible-extract filters) through the
gate's lm-eval path on the real SmolLM2. A 135M model scores 0 on GSM8K (README: "GSM8K"), so
D is not judged here: a zero baseline is an error, never a pass."""

from __future__ import annotations

import pytest

from quantgate.backend_settings import LlamaCppSettings
from quantgate.backends.llama_cpp import LlamaCppBackend
from quantgate.errors import EvaluationError
from quantgate.registry import Benchmark
from quantgate.retention import Comparison, run_benchmark
from quantgate.tasks import TaskIndex
from support.helpers import REPO

pytestmark = pytest.mark.real_model


def test_gsm8k_generates_and_each_filter_scores_every_item(smollm2_artifacts):
    baseline, _ = smollm2_artifacts
    backend = LlamaCppBackend(baseline, LlamaCppSettings(n_ctx=2048, n_batch=512))
    tasks = TaskIndex([REPO / "fixtures" / "tasks"], REPO)
    try:
        for name in ("strict-match", "flexible-extract"):
            bench = Benchmark(task="gsm8k_smoke", metric=f"exact_match,{name}", limit=4)
            result = run_benchmark(backend, "gsm8k", bench, tasks, f"gsm8k {name}")
            assert result.n_items == 4 and result.metric == f"exact_match,{name}"
            values = [it[result.metric] for it in result.items]
            assert set(values) <= {0.0, 1.0} and sum(values) / 4 == result.score
            # generation items carry no choices: no choice_kld, no gold probability
            assert all(it["loglikelihoods"] == [] for it in result.items)
            same = Comparison("gsm8k", result.score, result, result)
            if result.score == 0:
                with pytest.raises(EvaluationError, match="retention against zero is undefined"):
                    _ = same.d
            else:
                assert same.d == 0.0 and same.flips().flips_pct == 0.0
    finally:
        backend.close()
