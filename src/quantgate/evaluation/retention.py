"""Benchmark scores through lm-eval, for the retention gate D_i = (1 - B_c / B_b) * 100.

Scoring is lm-eval's own (its task YAMLs and metrics, through ``simple_evaluate``); the model
is quantgate's in-process llama.cpp LM. A score and its per-item records are cached on disk,
keyed by everything that changes them, so the baseline runs once and a re-run only reads.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from quantgate import progress
from quantgate.artifacts.cache import cache_key, cache_root, locked, read_result, write_result
from quantgate.backends.base import ScoredModel, result_settings
from quantgate.configuration.registry import Benchmark
from quantgate.configuration.schema_base import did_you_mean
from quantgate.configuration.subsets import subset
from quantgate.configuration.tasks import TaskIndex
from quantgate.errors import ConfigError, EvaluationError
from quantgate.evaluation.comparison import BenchmarkResult, Comparison, paired_items
from quantgate.verdicts.sequential import SequentialVerdict, drive, look

#: Bump when the scoring code below changes, so old cache entries are not reused.
METHOD_VERSION = 5  # 5: groups, filters, fractions (a group's items: "<subtask>/<doc_id>")


def _item_value(value: Any) -> float | None:
    """One item's metric value; IFEval's inst-level metrics hold one bool per instruction (the
    item's value is then their mean, and the task's score is not the mean over items)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return float(np.mean(value)) if value else None
    return float(value)


def _items(
    samples: list[dict[str, Any]], bench: Benchmark, subtask: str | None = None
) -> list[dict[str, Any]]:
    """One record per item of the benchmark's filter (lm-eval logs an item once per filter),
    keyed by doc_id, or "<subtask>/<doc_id>" for a group's subtask."""
    out = []
    for s in samples:
        if s.get("filter", "none") != bench.metric_filter:
            continue
        resps = s.get("filtered_resps", [])
        lls = [float(r[0]) for r in resps if isinstance(r, list | tuple)]
        record = {
            "doc_id": s["doc_id"] if subtask is None else f"{subtask}/{s['doc_id']}",
            "target": s.get("target"),
            "loglikelihoods": lls,
            "chosen": int(np.argmax(lls)) if lls else None,
            # a generation item's answer: its text after the filter (strict-match's number)
            "answer": resps[0] if resps and isinstance(resps[0], str) else None,
            bench.metric: _item_value(s.get(bench.metric_name)),
        }
        if subtask is not None:
            record["subtask"] = subtask
        out.append(record)
    return out


def _leaf_tasks(out: dict[str, Any], name: str) -> list[str]:
    """A group's tasks, nested groups expanded, in lm-eval's order ([name] for a task)."""
    children = (out.get("group_subtasks") or {}).get(name)
    if not children:
        return [name]
    return [leaf for child in children for leaf in _leaf_tasks(out, child)]


def _metric_key(bench: Benchmark) -> str:
    return f"{bench.metric_name},{bench.metric_filter}"


def _reported(results: dict[str, Any]) -> list[str]:
    """A result's metric keys as a benchmark names them (``acc``; ``exact_match,strict-match``)."""
    keys = {k.removesuffix(",none") for k in results if "," in k and "_stderr" not in k}
    return sorted(keys)


def task_sizes(
    bench: Benchmark, tasks: TaskIndex, where: str, source: Any = None
) -> dict[str, int]:
    """Each of the benchmark's tasks (a group's leaf tasks, or the task) and how many
    evaluation items it holds. Builds the tasks: their data is read. ``source``: the task as
    ``tasks.resolve`` gave it, where the caller has it (a local group is built once)."""
    if source is None:
        source = tasks.resolve(bench.task, where)
    loaded = tasks.task_manager(upstream=not tasks.is_local(bench.task)).load(source)
    return {name: len(task.eval_docs) for name, task in loaded["tasks"].items()}


def population_size(bench: Benchmark, tasks: TaskIndex, where: str) -> int:
    """How many items a full run of ``bench`` scores: its task's evaluation docs, or its
    ``limit`` (lm-eval takes the first ``limit`` docs). Builds the task: its data is read."""
    sizes = task_sizes(bench, tasks, where)
    if list(sizes) != [bench.task]:
        raise ConfigError(f"{where}: mode sequential needs a single task; {bench.task} is not one")
    if bench.fraction is not None:
        raise ConfigError(
            f"{where}: mode sequential draws its own random order of the items; drop fraction"
        )
    n = sizes[bench.task]
    if n == 0:
        raise EvaluationError(f"{where}: {bench.task} has no items: never a pass")
    return min(n, bench.limit) if bench.limit else n


def chosen_items(
    bench: Benchmark, tasks: TaskIndex, where: str, source: Any = None
) -> dict[str, list[int]]:
    """A ``fraction`` benchmark's items: each task's seeded random subset
    (quantgate.configuration.subsets)."""
    assert bench.fraction is not None
    return {
        name: subset(n, bench.fraction, bench.subset_seed, name)
        for name, n in task_sizes(bench, tasks, where, source).items()
    }


class PairedItems:
    """Both models' records of one benchmark's items, scored a batch of doc ids at a time
    through lm-eval's ``samples`` (each batch cached like any result, so a rerun, a later
    night or a full run reads what was scored), kept in the order the batches asked.

    Raises (from ``score``):
        ConfigError: a metric whose score is not the mean of per-item values in [0, 1].
    """

    def __init__(
        self,
        baseline: ScoredModel,
        compressed: ScoredModel,
        name: str,
        bench: Benchmark,
        tasks: TaskIndex,
        where: str,
    ) -> None:
        self.models = (baseline, compressed)
        self.name, self.bench, self.tasks, self.where = name, bench, tasks, where
        self.used: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def score(self, batch: list[int]) -> None:
        base, comp = (
            run_benchmark(m, self.name, self.bench, self.tasks, self.where, samples=batch)
            for m in self.models
        )
        for result in (base, comp):
            _check_item_mean(result, self.where)
        rank = {doc: i for i, doc in enumerate(batch)}
        what = f"{self.bench.task} {self.bench.metric}"
        pairs = paired_items(base, comp, what)
        self.used.extend(sorted(pairs, key=lambda bc: rank[bc[0]["doc_id"]]))


def run_sequential(items: PairedItems, threshold: float) -> Comparison:
    """D_<name> in mode sequential: both models score the benchmark's items in one seeded
    random order, ``sequential_batch`` at a time (quantgate.verdicts.sequential.drive), until the
    confidence sequence decides or the items run out. Each batch is scored through lm-eval's
    ``samples`` and cached like any result, so a rerun, a later night or a full run reads what
    was scored.

    Raises:
        ConfigError: a metric whose score is not the mean of per-item values in [0, 1].
    """
    name, bench = items.name, items.bench
    n = population_size(bench, items.tasks, items.where)
    used = items.used
    label = items.models[1].artifact.label

    def look_open(open_bounds: Collection[str]) -> dict[str, SequentialVerdict]:
        b = np.array([float(bi[bench.metric]) for bi, _ in used])
        c = np.array([float(ci[bench.metric]) for _, ci in used])
        return {name: look(b, c, n, threshold)}

    def say(_: str, state: SequentialVerdict) -> None:
        progress.say(
            f"{label}: {name} sequential, {state.n_used}/{n} items: D "
            f"{state.estimate:.3g} %, 95 % sequence [{state.low:.3g}, {state.high:.3g}] vs "
            f"{threshold:g}: {state.decision}"
        )

    stops = drive(n, bench.sequential_batch, items.score, look_open, [name], say)
    return joined_comparison(name, bench, used, stops[name])


def joined_comparison(
    name: str,
    bench: Benchmark,
    used: list[tuple[dict[str, Any], dict[str, Any]]],
    state: SequentialVerdict | None = None,
) -> Comparison:
    """The comparison over the item pairs a sequential gate used (a mean metric: checked by
    ``run_sequential``); ``state``: where it stopped."""
    base, comp = (_joined(name, bench, [pair[k] for pair in used]) for k in (0, 1))
    return Comparison(name, base.score, comp, base, sequential=state)


def _joined(name: str, bench: Benchmark, items: list[dict[str, Any]]) -> BenchmarkResult:
    score = float(np.mean([float(it[bench.metric]) for it in items]))
    return BenchmarkResult(name, bench.task, bench.metric, score, len(items), items)


def _lacks_answers(cached: dict[str, Any]) -> bool:
    """A result written before records kept a generation item's answer: its items without
    log-likelihoods have no "answer", and it is scored again. Only those records changed, so
    METHOD_VERSION stays: bumping it would also throw away multiple-choice results (a full
    HellaSwag is hours on a CPU) whose records are the same as before."""
    return any("answer" not in it and not it.get("loglikelihoods") for it in cached["items"])


def _check_item_mean(result: BenchmarkResult, where: str) -> None:
    scores = Comparison.item_scores(result, result.items)  # None unless they average to it
    if scores is None or not all(0 <= v <= 1 for v in scores):
        raise ConfigError(
            f"{where}: mode sequential needs a metric whose score is the mean of per-item "
            f"values in [0, 1] (acc, acc_norm, exact_match); {result.task} {result.metric} "
            "is not one: use mode ci"
        )


def run_benchmark(
    backend: ScoredModel,
    name: str,
    bench: Benchmark,
    tasks: TaskIndex,
    where: str,
    samples: list[int] | None = None,
) -> BenchmarkResult:
    """Score ``backend``'s model on one benchmark, from the cache when possible;
    ``samples``: only those items (indices into the task's docs: one batch of a sequential
    gate); their records carry that index as doc_id.

    Raises:
        ConfigError: an unknown task or metric.
        EvaluationError: zero items scored, or a non-finite score.
    """
    import lm_eval

    key = cache_key(
        artifact=backend.artifact.sha256,
        task=bench.task,
        task_content=tasks.fingerprint(bench.task),
        lm_eval=lm_eval.__version__,
        metric=bench.metric,
        limit=bench.limit,
        fewshot=bench.num_fewshot,
        fewshot_seed=bench.fewshot_seed,
        fraction=bench.fraction,
        subset_seed=bench.subset_seed,
        template=bench.apply_chat_template,
        **result_settings(backend.name, backend.settings),
        method=METHOD_VERSION,
        **({"samples": sorted(samples)} if samples is not None else {}),
    )
    path = cache_root() / "results" / "benchmarks" / f"{key}.json"
    cached = read_result(path)
    if cached is not None and not _lacks_answers(cached):
        return BenchmarkResult(**cached)
    # one scorer per result: an xdist worker that needs the same baseline waits and reads it
    with locked(path):
        cached = read_result(path)
        if cached is not None and not _lacks_answers(cached):
            return BenchmarkResult(**cached)
        source = tasks.resolve(bench.task, where)  # lm-eval's loader: only to score
        if samples is not None:
            chosen: dict[str, list[int]] | None = {bench.task: sorted(samples)}
        elif bench.fraction is not None:
            chosen = chosen_items(bench, tasks, where, source)
        else:
            chosen = None
        return _score(backend, name, bench, source, tasks, where, path, chosen)


def _score(
    backend: ScoredModel,
    name: str,
    bench: Benchmark,
    source: Any,
    tasks: TaskIndex,
    where: str,
    path: Path,
    chosen: dict[str, list[int]] | None = None,
) -> BenchmarkResult:
    """``chosen``: only those items of each task (a sequential batch, or a fraction's subset);
    lm-eval logs them under their own indices."""
    from lm_eval import simple_evaluate

    lm = backend.lm_eval_model()
    label = backend.artifact.label
    n_chosen = sum(map(len, chosen.values())) if chosen is not None else 0
    count = f"{n_chosen} chosen" if chosen is not None else bench.limit or "all"
    with progress.step(f"{label}: lm-eval {bench.task} ({count} items)"):
        out = simple_evaluate(
            model=lm,
            tasks=[source],
            num_fewshot=bench.num_fewshot,
            limit=None if chosen is not None else bench.limit,
            samples=chosen,
            apply_chat_template=bench.apply_chat_template,
            log_samples=True,
            bootstrap_iters=0,
            task_manager=tasks.task_manager(upstream=not tasks.is_local(bench.task)),
            random_seed=0,
            numpy_random_seed=1234,
            torch_random_seed=1234,
            fewshot_random_seed=bench.fewshot_seed,
            verbosity="WARNING",
        )
    out = out or {}
    results = out.get("results", {}).get(bench.task)
    leaves = _leaf_tasks(out, bench.task)
    group = leaves != [bench.task]
    items = []
    for leaf in leaves:
        items += _items(out.get("samples", {}).get(leaf, []), bench, leaf if group else None)
    if results is None or not items:
        raise EvaluationError(
            f"{where}: lm-eval scored 0 items of {bench.task} ({bench.metric}) for {label}; "
            "an empty data set, a limit of 0 or a filter that logged nothing is never a pass"
        )
    value = results.get(_metric_key(bench))
    if value is None:
        have = _reported(results)
        raise ConfigError(
            f"{where}: {'group' if group else 'task'} {bench.task} reports no {bench.metric!r}"
            f"{did_you_mean(bench.metric, have)}; it reports: {', '.join(have) or 'nothing'}"
        )
    if not np.isfinite(value):
        raise EvaluationError(f"{where}: {bench.task} {bench.metric} = {value} for {label}")
    subtasks = {}
    if group:
        for leaf in leaves:
            score = out["results"].get(leaf, {}).get(_metric_key(bench))
            if score is not None:
                subtasks[leaf] = float(score)
    # lm-eval logs a chosen doc under its own index (its doc_id_true): check, as pairing needs
    if chosen is not None:
        expected = sorted(
            i if not group else f"{task}/{i}" for task, ids in chosen.items() for i in ids
        )
        if sorted(it["doc_id"] for it in items) != expected:
            raise EvaluationError(
                f"{where}: lm-eval scored other items of {bench.task} than the {n_chosen} chosen"
            )
    result = BenchmarkResult(
        name, bench.task, bench.metric, float(value), len(items), items, subtasks
    )
    write_result(path, asdict(result))
    return result
