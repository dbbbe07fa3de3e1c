"""The benchmark-retention gate through lm-eval, on the real SmolLM2 (scores are cached, so the
baseline runs once per cache)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.helpers import OFFLINE, REPO

RET = "tests/test_retention.py"
ONLY = ("--model", "smollm2")


@pytest.mark.real_model
def test_q8_0_passes_and_q2_k_canary_is_caught(smoke_run):
    run = smoke_run  # pytest -m smoke, once a session: its retention tests (support/fixtures.py)
    outcomes = run.outcomes()
    retention = {k: v for k, v in outcomes.items() if k.startswith("test_retention")}
    assert {k: v for k, v in retention.items() if "Q8_0" in k} == {
        f"test_retention[smollm2-Q8_0-{b}]": "passed"
        for b in ("hellaswag", "arc_challenge", "truthfulqa_mc2", "winogrande")
    } | {"test_retention_overall[smollm2-Q8_0]": "passed"}
    assert outcomes["test_retention[smollm2-Q2_K-truthfulqa_mc2]"] == "xfailed"
    rows = run.summary()
    # 25 items cannot prove the accuracy loss (D's interval spans zero) ...
    d = rows["smollm2-Q2_K", "D_truthfulqa_mc2"]
    assert d["verdict"] == "pass" and d["ci_low"] < 0 < d["ci_high"] and d["expect"] == "fail"
    # ... the answer distributions can: the graded signal fails the canary
    kld = rows["smollm2-Q2_K", "choice_kld_truthfulqa_mc2"]
    assert kld["verdict"] == "FAIL" and kld["expect"] == "fail" and kld["ci_low"] > 0.02
    assert rows["smollm2-Q8_0", "choice_kld_truthfulqa_mc2"]["verdict"] == "pass"
    # per-item records of both models, for paired statistics
    items = (run.reports / "items" / "smollm2-Q2_K-truthfulqa_mc2.jsonl").read_text().splitlines()
    assert len(items) == 25
    first = json.loads(items[0])
    assert first["baseline"]["doc_id"] == first["compressed"]["doc_id"] == 0
    assert len(first["baseline"]["loglikelihoods"]) > 2


@pytest.mark.real_model
def test_q2_k_fails_the_run_when_not_declared_a_canary(gate_run, registry_copy):
    def edit(doc):
        doc["models"]["smollm2"]["compressions"]["Q2_K"]["expect_fail_on"] = ["perplexity"]

    run = gate_run(
        RET, f"--registry={registry_copy(edit)}", *ONLY, "--compression", "Q2_K", "-k", "truthfulqa"
    )
    assert run.returncode == 1
    assert run.outcomes() == {"test_retention[smollm2-Q2_K-truthfulqa_mc2]": "failed"}
    assert "FAIL: choice_kld_truthfulqa_mc2 = " in run.output


@pytest.mark.real_model
def test_lm_eval_cli_gives_the_suite_s_number(gate_run, smollm2_artifacts):
    """lm-eval's own CLI with quantgate's model and the local task reproduces the suite's score."""
    run = gate_run(RET, *ONLY, "--compression", "Q8_0", "-k", "truthfulqa")
    assert run.returncode == 0, run.output
    suite = run.summary()["smollm2-Q8_0", "D_truthfulqa_mc2"]["baseline"]
    baseline, _ = smollm2_artifacts
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "quantgate.backends.lm_eval_cli",
            "run",
            "--model",
            "quantgate-llama-cpp",
            "--model_args",
            f"model_path={baseline.path},n_ctx=512,n_batch=512",
            "--tasks",
            "truthfulqa_mc2_smoke",
            "--include_path",
            "fixtures/tasks",
            "--limit",
            "25",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**__import__("os").environ, **OFFLINE, "HF_DATASETS_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if "truthfulqa_mc2_smoke" in line)
    cli = float(row.split("|")[7])
    assert cli == pytest.approx(suite, abs=5e-5)


@pytest.mark.real_model
def test_pinned_baseline_replaces_the_live_run(gate_run, registry_copy):
    def edit(doc):
        doc["models"]["smollm2"]["benchmarks"]["truthfulqa_mc2"]["pinned_baseline"] = 0.6

    pinned = (RET, f"--registry={registry_copy(edit)}", *ONLY, "--compression", "Q8_0")
    run = gate_run(*pinned, "-s", "-k", "truthfulqa", "--baseline", "pinned")
    row = run.summary()["smollm2-Q8_0", "D_truthfulqa_mc2"]
    assert row["baseline"] == 0.6 and row["value"] > 10  # 0.51 against a pinned 0.6: -15 %
    # the pinned score is a constant: the interval comes from the variant's items alone
    assert row["ci_low"] < row["value"] < row["ci_high"]
    assert run.returncode == (0 if row["verdict"] == "pass" else 1), run.output[-2000:]
    # the paired metrics have no baseline items to pair with: reported, never a pass
    assert "not measured here: choice_kld_truthfulqa_mc2 (--baseline pinned" in run.output
    # a benchmark without a pinned score is an error under --baseline pinned, never a pass:
    # a usage error before any test runs (quantgate.configuration.validation)
    run = gate_run(*pinned, "-k", "hellaswag", "--baseline", "pinned")
    assert run.returncode == 4
    assert (
        "models.smollm2.benchmarks.hellaswag: --baseline pinned, but the entry has no "
        "pinned_baseline" in run.output
    )


@pytest.mark.real_model
def test_a_bound_the_run_cannot_measure_is_an_error(gate_run, thresholds_copy):
    """flips need correct/wrong items; truthfulqa_mc2 scores a probability mass. The bound is
    valid on paper (the benchmark exists), so the run finds it unmeasured: an error, never a
    pass."""
    bounds = thresholds_copy(defaults={"smollm2.yaml": {"flips_truthfulqa_mc2": 10.0}})
    run = gate_run(
        RET, f"--thresholds={bounds}", *ONLY, "--compression", "Q8_0", "-k", "truthfulqa"
    )
    assert run.returncode == 1
    assert run.outcomes() == {"test_retention[smollm2-Q8_0-truthfulqa_mc2]": "failed"}
    assert (
        "flips_truthfulqa_mc2 has a bound (smollm2.yaml:defaults) but this pair's retention "
        "test cannot measure it (for flips need a correct/wrong metric); delete the key"
    ) in run.output


@pytest.mark.real_model
def test_a_group_is_gated_on_its_aggregate_and_reports_its_subtasks(gate_run):
    """A local lm-eval group (three AGIEval-en subtasks, the first 20 of each subtask's 40
    items: the mechanism, not the set's size, is under test): D on the aggregate lm-eval
    computes, paired statistics over all 60 items, subtasks in the report; Q8_0 passes and the
    Q2_K canary is caught by its answer distributions."""
    run = gate_run(RET, "-m", "slow", "--model", "smollm2_agieval", "--limit", "20")
    assert run.returncode == 0, run.output[-3000:]
    assert run.outcomes() == {
        "test_retention[smollm2_agieval-Q8_0-agieval_en]": "passed",
        "test_retention_overall[smollm2_agieval-Q8_0]": "passed",
        "test_retention[smollm2_agieval-Q2_K-agieval_en]": "xfailed",
        "test_retention_overall[smollm2_agieval-Q2_K]": "passed",
    }
    rows = run.summary()
    d = rows["smollm2_agieval-Q8_0", "D_agieval_en"]
    subtasks = d["subtasks"]
    assert set(subtasks) == {
        "agieval_aqua_rat_smoke",
        "agieval_lsat_ar_smoke",
        "agieval_sat_math_smoke",
    }
    assert all(r["n_items"] == 20 for r in subtasks.values()) and d["n_items"] == 60
    # weight_by_size over equal subtasks: the aggregate is their mean
    mean = sum(r["compressed"] for r in subtasks.values()) / 3
    assert d["score"] == pytest.approx(mean)
    assert rows["smollm2_agieval-Q8_0", "choice_kld_agieval_en"]["verdict"] == "pass"
    kld = rows["smollm2_agieval-Q2_K", "choice_kld_agieval_en"]
    assert kld["verdict"] == "FAIL" and kld["expect"] == "fail" and kld["ci_low"] > 0.02
    items = run.reports / "items" / "smollm2_agieval-Q2_K-agieval_en.jsonl"
    ids = [json.loads(line)["doc_id"] for line in items.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 60 and ids[0].startswith("agieval_aqua_rat_smoke/")
    assert "group subtasks" in (run.reports / "summary.md").read_text()


@pytest.mark.real_model
def test_limit_runs_the_quick_tier_on_the_first_items(gate_run):
    """`--limit 8`: hellaswag scored on its first 8 items, baseline and variant alike, judged
    and recorded as such (the full tier's results are cached apart). The Q2_K canary is not
    strict there: caught or not on 8 items, the quick tier stays green."""
    run = gate_run(
        "tests/test_retention.py::test_retention",
        "--model",
        "smollm2",
        "--compression",
        "Q8_0",
        "--compression",
        "Q2_K",
        "-k",
        "hellaswag",
        "--limit",
        "8",
    )
    assert run.returncode == 0, run.output[-3000:]
    outcomes = run.outcomes()
    assert outcomes["test_retention[smollm2-Q8_0-hellaswag]"] == "passed"
    # junit.xml records a non-strict XPASS as passed; pytest's summary says which it was
    if outcomes["test_retention[smollm2-Q2_K-hellaswag]"] != "xfailed":
        assert "not strict under --limit 8" in run.output, run.output[-3000:]
    assert run.summary()["smollm2-Q8_0", "D_hellaswag"]["n_items"] == 8
