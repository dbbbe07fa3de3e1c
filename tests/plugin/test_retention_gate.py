"""Bad benchmark entries and an empty data file are errors before any model runs."""

from __future__ import annotations

import pytest

from support.helpers import REPO

RET = "tests/test_retention.py"
ONLY = ("--model", "smollm2")
#: a benchmark a test adds needs its D_ bound (a benchmark without one is a usage error)
WG_BOUND = {"smollm2.yaml": {"D_wg": {"value": 10.0, "mode": "ci"}}}


def _wg_run(gate_run, registry, thresholds):
    """The retention gate on the added benchmark ``wg`` of smollm2's Q8_0 alone."""
    return gate_run(
        RET,
        f"--registry={registry}",
        f"--thresholds={thresholds}",
        *ONLY,
        "--compression",
        "Q8_0",
        "-k",
        "wg",
    )


@pytest.mark.parametrize(
    ("bench", "message"),
    [
        # a task lm-eval does not know: named, with the close match
        (
            {"task": "hellaswag_smok", "metric": "acc"},
            "lm-eval knows no task 'hellaswag_smok' (did you mean 'hellaswag_smoke'?)",
        ),
        # a metric the task does not report
        (
            {"task": "winogrande_smoke", "metric": "acc_norm", "limit": 2},
            "task winogrande_smoke has no metric 'acc_norm'",
        ),
        # a filter the task does not have (lm-eval would log no item under it)
        (
            {"task": "winogrande_smoke", "metric": "acc,strict-match", "limit": 2},
            "task winogrande_smoke has no filter 'strict-match'",
        ),
        # a group reports a score only for the metrics it aggregates
        (
            {"task": "agieval_en_smoke", "metric": "exact_match"},
            "group agieval_en_smoke",
        ),
    ],
)
def test_bad_benchmark_entries_are_errors(gate_run, registry_copy, thresholds_copy, bench, message):
    """Usage errors before any test runs (quantgate.configuration.validation), not a failure per
    test."""

    def edit(doc):  # added beside the shipped benchmarks, whose thresholds stay valid
        doc["models"]["smollm2"]["benchmarks"]["wg"] = bench

    run = _wg_run(gate_run, registry_copy(edit), thresholds_copy(defaults=WG_BOUND))
    assert run.returncode == 4, run.output[-3000:]
    assert message in run.output and "passed" not in run.output


def test_empty_data_file_is_an_error(gate_run, registry_copy, thresholds_copy, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    src = (REPO / "fixtures" / "tasks" / "winogrande_smoke.yaml").read_text()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    (tasks / "wg_empty.yaml").write_text(
        src.replace("task: winogrande_smoke", "task: wg_empty").replace(
            "fixtures/data/winogrande/dev_first100.jsonl", str(empty)
        )
    )
    (tasks / "utils.py").write_text((REPO / "fixtures" / "tasks" / "utils.py").read_text())

    def edit(doc):
        doc["evaluation"]["task_paths"].append(str(tasks))
        doc["models"]["smollm2"]["benchmarks"]["wg"] = {"task": "wg_empty", "metric": "acc"}

    run = _wg_run(gate_run, registry_copy(edit), thresholds_copy(defaults=WG_BOUND))
    assert run.returncode == 4, run.output[-3000:]
    assert f"data_files.validation: {empty} is empty" in run.output
