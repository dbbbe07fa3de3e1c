"""The local GSM8K (fixtures/tasks/gsm8k_smoke.yaml: lm-eval's gsm8k, 5-shot, greedy generation
until "Question:", exact_match behind its strict-match and flexible-extract filters) through the
gate's lm-eval path on the real SmolLM2. A 135M model scores 0 on GSM8K (docs/retention.md:
"GSM8K"), so its D is undefined: a bound on it is an error, never a pass. The gate judges the
answers a compression changes instead (answers_changed_gsm8k), both ways: Q8_0 passes, Q2_K
fails."""

from __future__ import annotations

import pytest

from quantgate.backends.llama_cpp import LlamaCppBackend
from quantgate.configuration.backend_settings import LlamaCppSettings
from quantgate.configuration.registry import Benchmark
from quantgate.configuration.tasks import TaskIndex
from quantgate.errors import EvaluationError
from quantgate.evaluation.comparison import Comparison
from quantgate.evaluation.retention import run_benchmark
from support.helpers import REPO

# untimed: generation and exact match only, no timed gate (make test runs it beside the rest)
pytestmark = [pytest.mark.real_model, pytest.mark.untimed]

RET = "tests/test_retention.py"
FAMILY = ("-m", "slow", "--model", "smollm2_gsm8k")


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


def test_q8_0_passes_and_the_q2_k_canary_fails_on_the_answers_they_change(gate_run):
    """thresholds/smollm2_gsm8k.yaml: at most 60 % of the 20 answers changed, mode ci; the
    family's noise floor runs beside it."""
    run = gate_run(RET, "tests/test_noise_floor.py", *FAMILY)
    assert run.returncode == 0, run.output[-3000:]
    assert run.outcomes() == {
        "test_noise_floor[smollm2_gsm8k]": "passed",
        "test_retention[smollm2_gsm8k-Q8_0-gsm8k]": "passed",
        "test_retention_overall[smollm2_gsm8k-Q8_0]": "skipped",
        "test_retention[smollm2_gsm8k-Q2_K-gsm8k]": "xfailed",
        "test_retention_overall[smollm2_gsm8k-Q2_K]": "skipped",
    }
    rows = run.summary()
    good, canary = (rows[f"smollm2_gsm8k-{c}", "answers_changed_gsm8k"] for c in ("Q8_0", "Q2_K"))
    assert good["verdict"] == "pass" and good["n_items"] == 20 and good["ci_low"] < 60
    assert canary["verdict"] == "FAIL" and canary["expect"] == "fail" and canary["ci_low"] > 60
    assert good["answers_changed"] == round(good["value"] / 100 * 20)
    # the baseline against itself, arithmetic perturbed: what no compression is blamed for
    noise = rows["smollm2_gsm8k-noise_floor", "answers_changed_gsm8k"]
    assert noise["verdict"] == "not gated" and noise["ci_high"] < 60
    # D against the zero baseline is reported as not judged, never as a pass
    assert ("smollm2_gsm8k-Q8_0", "D_gsm8k") not in rows
    junit = (run.reports / "junit.xml").read_text()
    assert "D_gsm8k not judged (no bound): the baseline scored 0 on gsm8k_smoke" in junit


def test_a_bound_on_d_against_a_zero_baseline_is_an_error(gate_run, thresholds_copy):
    """The results are cached by the test above: only the verdict is new."""
    bounds = thresholds_copy(defaults={"smollm2_gsm8k.yaml": {"D_gsm8k": 5.0}})
    run = gate_run(
        RET, f"--thresholds={bounds}", *FAMILY, "--compression", "Q8_0", "-k", "not overall"
    )
    assert run.returncode == 1
    assert run.outcomes() == {"test_retention[smollm2_gsm8k-Q8_0-gsm8k]": "failed"}
    assert (
        "smollm2_gsm8k-Q8_0: D_gsm8k has a bound (smollm2_gsm8k.yaml:defaults) but the baseline "
        "scored 0 on gsm8k_smoke exact_match,strict-match (0.0), and retention against zero is "
        "undefined; gate answers_changed_gsm8k instead"
    ) in run.output
