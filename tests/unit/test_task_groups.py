"""lm-eval groups and filtered metrics without a model: the configure-time checks of a local
group, and how a run's logged samples become one record per item."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantgate.configuration.registry import Benchmark
from quantgate.configuration.tasks import TaskIndex
from quantgate.errors import ConfigError
from quantgate.evaluation.retention import _items, _lacks_answers, _leaf_tasks, _reported
from support.helpers import REPO

TASKS = REPO / "fixtures" / "tasks"


def _index(tmp_path: Path, group: str) -> TaskIndex:
    """The shipped local tasks plus one group YAML written here."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "g.yaml").write_text(group)
    return TaskIndex([TASKS, folder], REPO)


def test_the_shipped_group_is_indexed_as_a_group_and_checks():
    tasks = TaskIndex([TASKS], REPO)
    assert "agieval_en_smoke" in tasks.groups and "agieval_en_smoke" not in tasks.local
    assert tasks.is_local("agieval_en_smoke") and tasks.is_local("agieval_sat_math_smoke")
    tasks.check("agieval_en_smoke", "acc_norm", "models.x.benchmarks.agieval")
    tasks.check("agieval_en_smoke", "acc,none", "models.x.benchmarks.agieval")


@pytest.mark.parametrize(
    ("group", "metric", "message"),
    [
        (
            "group: g\ntask: [agieval_sat_math_smoke]\n",
            "acc",
            r"group g \(.*g\.yaml\) aggregates no 'acc': lm-eval reports a group score only "
            r"for its aggregate_metric_list \(empty\)",
        ),
        (
            "group: g\ntask: [agieval_sat_mat_smoke]\naggregate_metric_list: [{metric: acc}]\n",
            "acc",
            "lists 'agieval_sat_mat_smoke', which is not a local task \\(did you mean "
            "'agieval_sat_math_smoke'\\?\\)",
        ),
        (
            "group: g\ntask: [{task: agieval_sat_math_smoke, num_fewshot: 5}]\n"
            "aggregate_metric_list: [{metric: acc}]\n",
            "acc",
            "overrides a member's keys; a local group lists task names",
        ),
        (
            "group: g\ntask: [agieval_sat_math_smoke]\naggregate_metric_list: [{metric: acc}]\n",
            "acc,flexible-extract",
            "task agieval_sat_math_smoke has no filter 'flexible-extract'",
        ),
    ],
)
def test_a_broken_group_is_a_usage_error_naming_it(tmp_path, group, metric, message):
    with pytest.raises(ConfigError, match=message):
        _index(tmp_path, group).check("g", metric, "models.x.benchmarks.g")


def test_a_filter_on_a_local_task_must_be_one_it_declares(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    src = (TASKS / "winogrande_smoke.yaml").read_text().replace("winogrande_smoke", "wg_f")
    (folder / "wg.yaml").write_text(
        src + "filter_list:\n  - name: strict-match\n    filter: [{function: take_first}]\n"
    )
    tasks = TaskIndex([folder], REPO)
    tasks.check("wg_f", "acc,strict-match", "w")
    with pytest.raises(ConfigError, match=r"has no filter 'none'.*its filters: strict-match"):
        tasks.check("wg_f", "acc", "w")


def _sample(doc_id: int, value: float, filt: str = "none") -> dict:
    return {
        "doc_id": doc_id,
        "target": 0,
        "filter": filt,
        "exact_match": value,
        "filtered_resps": ["42"],
    }


def test_one_record_per_item_of_the_benchmark_s_filter():
    # lm-eval logs each item once per filter (gsm8k: strict-match and flexible-extract)
    samples = [
        _sample(0, 1.0, "strict-match"),
        _sample(0, 0.0, "flexible-extract"),
        _sample(1, 0.0, "strict-match"),
        _sample(1, 1.0, "flexible-extract"),
    ]
    bench = Benchmark(task="gsm8k", metric="exact_match,strict-match")
    assert (bench.metric_name, bench.metric_filter) == ("exact_match", "strict-match")
    items = _items(samples, bench)
    assert [(it["doc_id"], it["exact_match,strict-match"]) for it in items] == [(0, 1.0), (1, 0.0)]
    assert items[0]["loglikelihoods"] == [] and items[0]["chosen"] is None  # a generation
    assert items[0]["answer"] == "42"  # its text after the filter
    plain = Benchmark(task="t", metric="exact_match")
    assert plain.metric_filter == "none" and _items(samples, plain) == []
    mc = _sample(0, 1.0) | {"filtered_resps": [[-1.5, False], [-0.5, True]]}
    record = _items([mc], Benchmark(task="t", metric="exact_match"))[0]
    assert record["answer"] is None and record["chosen"] == 1


def test_a_cached_generation_result_without_answers_is_scored_again():
    # written before records kept the answer: only generation records lack what they need now
    old_generation = {"items": [{"doc_id": 0, "loglikelihoods": [], "exact_match": 0.0}]}
    old_choice = {"items": [{"doc_id": 0, "loglikelihoods": [-1.0, -2.0], "acc": 1.0}]}
    new_generation = {"items": [{"doc_id": 0, "loglikelihoods": [], "answer": "[invalid]"}]}
    assert _lacks_answers(old_generation)
    assert not _lacks_answers(old_choice) and not _lacks_answers(new_generation)


def test_a_group_s_items_are_keyed_by_subtask():
    out = {"group_subtasks": {"g": ["a", "sub"], "sub": ["b", "c"]}}
    assert _leaf_tasks(out, "g") == ["a", "b", "c"] and _leaf_tasks(out, "t") == ["t"]
    items = _items([_sample(3, 1.0)], Benchmark(task="g", metric="exact_match"), "b")
    assert items[0]["doc_id"] == "b/3" and items[0]["subtask"] == "b"


def test_reported_metrics_are_named_as_a_benchmark_names_them():
    results = {
        "acc,none": 0.3,
        "acc_stderr,none": 0.1,
        "exact_match,strict-match": 0.2,
        "alias": "x",
    }
    assert _reported(results) == ["acc", "exact_match,strict-match"]


def test_an_upstream_task_s_metric_is_checked_and_an_upstream_group_is_left_to_its_run():
    # lm-eval's own index (its task YAMLs, no data and no Hub)
    tasks = TaskIndex([TASKS], REPO)
    tasks.check("hellaswag", "acc_norm", "models.x.benchmarks.hellaswag")
    with pytest.raises(ConfigError, match="task hellaswag has no metric 'acc_nrom'"):
        tasks.check("hellaswag", "acc_nrom", "models.x.benchmarks.hellaswag")
    with pytest.raises(ConfigError, match="task gsm8k has no filter 'strict'"):
        tasks.check("gsm8k", "exact_match,strict", "models.x.benchmarks.gsm8k")
    tasks.check("gsm8k", "exact_match,strict-match", "models.x.benchmarks.gsm8k")
    tasks.check("agieval_en", "acc", "models.x.benchmarks.agieval")  # a group: checked when run
