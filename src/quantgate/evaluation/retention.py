"""Benchmark scores through lm-eval, for the retention gate D_i = (1 - B_c / B_b) * 100.

Scoring is lm-eval's own (its task YAMLs and metrics, through ``simple_evaluate``); the model
is quantgate's in-process llama.cpp LM. A score and its per-item records are cached on disk,
keyed by everything that changes them, so the baseline runs once and a re-run only reads.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from quantgate import progress
from quantgate.artifacts.cache import cache_key, cache_root, locked, read_result, write_result
from quantgate.backends.base import ScoredModel, result_settings
from quantgate.configuration.constants import CHOICE_KLD_PREFIX, GOLD_PREFIX
from quantgate.configuration.registry import Benchmark
from quantgate.configuration.schema_base import did_you_mean
from quantgate.configuration.subsets import subset
from quantgate.configuration.tasks import TaskIndex
from quantgate.errors import ConfigError, EvaluationError
from quantgate.verdicts.sequential import SequentialVerdict, drive, look
from quantgate.verdicts.stats import (
    Flips,
    Interval,
    choice_kld,
    flips,
    gold_probability,
    is_binary,
    mean_interval,
)
from quantgate.verdicts.stats import retention_interval as _retention_interval

#: Bump when the scoring code below changes, so old cache entries are not reused.
METHOD_VERSION = 5  # 5: groups, filters, fractions (a group's items: "<subtask>/<doc_id>")


@dataclass(frozen=True)
class BenchmarkResult:
    benchmark: str
    task: str
    metric: str
    score: float
    n_items: int
    #: one dict per item: doc_id, target, per-choice log-likelihoods, chosen, the metric value
    #: (a group's items, of every subtask, carry "<subtask>/<doc_id>" and "subtask")
    items: list[dict[str, Any]]
    #: a group's subtasks and each one's score on the metric (empty for a single task)
    subtasks: dict[str, float] = field(default_factory=dict)


def paired_items(
    base: BenchmarkResult, comp: BenchmarkResult, what: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The two runs' records of each item, matched by doc_id (lm-eval's sample order is not
    a contract: a cached run and a fresh one, or two worker counts, may list them apart).

    Raises:
        EvaluationError: the runs scored different items.
    """
    by_id = {it["doc_id"]: it for it in comp.items}
    base_ids = [it["doc_id"] for it in base.items]
    if len(by_id) != len(comp.items) or len(set(base_ids)) != len(base_ids):
        raise EvaluationError(f"{what}: a doc_id appears twice in one run's samples")
    if set(base_ids) != set(by_id):
        only_b = sorted(set(base_ids) - set(by_id))[:5]
        only_c = sorted(set(by_id) - set(base_ids))[:5]
        raise EvaluationError(
            f"{what}: baseline and compressed model scored different items (only the baseline: "
            f"{only_b}, only the compressed model: {only_c}); they must see the same items"
        )
    return [(b, by_id[b["doc_id"]]) for b in base.items]


@dataclass(frozen=True)
class Comparison:
    """One benchmark of one pair: the compressed model's result and the baseline's, on the
    same items (``baseline`` is None with ``--baseline pinned``: no items to pair with)."""

    benchmark: str
    baseline_score: float
    compressed: BenchmarkResult
    baseline: BenchmarkResult | None = None
    #: mode sequential: where the gate stopped (the two results hold the items it used)
    sequential: SequentialVerdict | None = None

    @property
    def what(self) -> str:
        return f"{self.compressed.task} {self.compressed.metric}"

    @cached_property
    def items(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(baseline, compressed) records of every item, matched by doc_id."""
        if self.baseline is None:
            return []
        return paired_items(self.baseline, self.compressed, self.what)

    @staticmethod
    def item_scores(result: BenchmarkResult, records: list[dict[str, Any]]) -> list[float] | None:
        """Per-item metric values, if they average to the task's score (a mean aggregation)."""
        values = [it.get(result.metric) for it in records]
        if any(v is None for v in values) or not values:
            return None
        scores = [float(v) for v in values]  # type: ignore[arg-type]
        return scores if abs(float(np.mean(scores)) - result.score) < 1e-9 else None

    @property
    def d(self) -> float:
        return retention_pct(self.compressed.score, self.baseline_score, self.what)

    def paired_scores(self) -> tuple[list[float], list[float]] | None:
        return self._paired

    @cached_property
    def _paired(self) -> tuple[list[float], list[float]] | None:
        if self.baseline is None:
            return None
        base = self.item_scores(self.baseline, [b for b, _ in self.items])
        comp = self.item_scores(self.compressed, [c for _, c in self.items])
        return None if base is None or comp is None else (base, comp)

    def subtasks(self) -> dict[str, dict[str, float | int | None]]:
        """A group's subtasks, each with both models' scores (lm-eval's, on the benchmark's
        metric), D, its item count and flip rate (% of its items whose correctness changed;
        None for a graded metric). Empty for a single task or a pinned baseline."""
        if self.baseline is None or not self.compressed.subtasks:
            return {}
        metric = self.compressed.metric
        out: dict[str, dict[str, float | int | None]] = {}
        for sub, comp_score in self.compressed.subtasks.items():
            base_score = self.baseline.subtasks.get(sub)
            pairs = [(b, c) for b, c in self.items if b.get("subtask") == sub]
            b_scores = [float(b[metric]) for b, _ in pairs]
            c_scores = [float(c[metric]) for _, c in pairs]
            binary = bool(pairs) and is_binary(b_scores) and is_binary(c_scores)
            out[sub] = {
                "baseline": base_score,
                "compressed": comp_score,
                "D": retention_pct(comp_score, base_score, f"{self.what} {sub}")
                if base_score
                else None,
                "n_items": len(pairs),
                "flips_pct": flips(b_scores, c_scores, f"{self.what} {sub}").flips_pct
                if binary
                else None,
            }
        return out

    def interval(self) -> Interval | None:
        """Paired bootstrap 95 % CI of D over items (None when there are no paired items)."""
        return self._interval

    @cached_property
    def _interval(self) -> Interval | None:
        # computed once: the gate reports it and the summary row carries it
        paired = self._paired
        if paired is not None:
            return _retention_interval(*paired, what=self.what)
        if self.baseline is None:  # a pinned baseline: a constant, only the variant's items vary
            comp = self.item_scores(self.compressed, self.compressed.items)
            if comp is not None:
                fixed = [self.baseline_score] * len(comp)
                return _retention_interval(fixed, comp, what=f"{self.what} (pinned baseline)")
        return None

    def flips(self) -> Flips | None:
        """Correct/wrong changes (None for graded metrics such as truthfulqa_mc2's mass)."""
        paired = self.paired_scores()
        if paired is None or not (is_binary(paired[0]) and is_binary(paired[1])):
            return None
        return flips(*paired, what=self.what)

    @cached_property
    def _choices(self) -> list[tuple[list[float], list[float], Any]] | None:
        """Both runs' per-choice log-likelihoods and the target, for multiple-choice items
        (None for generation tasks, or where the runs saw different choices)."""
        out = []
        for b, c in self.items:
            lls_b, lls_c = b.get("loglikelihoods") or [], c.get("loglikelihoods") or []
            if len(lls_b) < 2 or len(lls_b) != len(lls_c):
                return None
            out.append((lls_b, lls_c, b.get("target")))
        return out or None

    def gold_probability(self) -> tuple[list[float], list[float]] | None:
        """Each item's probability of the gold choice under the baseline and the compressed
        model, for a correct/wrong multiple-choice metric with one gold index (None else:
        truthfulqa_mc2's items have several true answers, and its score already is a mass)."""
        choices, paired = self._choices, self.paired_scores()
        if choices is None or paired is None or not is_binary(paired[0]):
            return None
        if not all(isinstance(t, int) and 0 <= t < len(b) for b, _, t in choices):
            return None
        return (
            [gold_probability(b, t) for b, _, t in choices],
            [gold_probability(c, t) for _, c, t in choices],
        )

    def answers_changed(self) -> tuple[int, int] | None:
        """(items whose answer differs from the baseline's, items) for a generation task, where
        every item of both runs carries its filtered answer (None else). Exact string
        equality: the filter has already reduced the text to what the metric compares (GSM8K's
        number, or "[invalid]" where neither run wrote one)."""
        pairs = [(b.get("answer"), c.get("answer")) for b, c in self.items]
        if not pairs or not all(isinstance(a, str) for pair in pairs for a in pair):
            return None
        return sum(a != b for a, b in pairs), len(pairs)

    def choice_kld(self) -> list[float] | None:
        """Per item, KL(P_baseline || P_compressed) between the answer distributions."""
        choices = self._choices
        return None if choices is None else [choice_kld(b, c) for b, c, _ in choices]

    def graded(self) -> dict[str, Interval]:
        """The graded per-item signals this benchmark supports, as metric name -> value with
        its paired 95 % interval: Dgold_<bench> (retention of the gold-choice probability)
        and choice_kld_<bench> (mean answer-distribution KLD)."""
        out: dict[str, Interval] = {}
        gold = self.gold_probability()
        if gold is not None:
            out[f"{GOLD_PREFIX}{self.benchmark}"] = _retention_interval(
                *gold, what=f"{self.what} gold probability"
            )
        kld = self.choice_kld()
        if kld is not None:
            out[f"{CHOICE_KLD_PREFIX}{self.benchmark}"] = mean_interval(kld)
        return out


def retention_pct(compressed: float, baseline: float, what: str) -> float:
    """D_i = (1 - B_compressed / B_baseline) * 100 for a higher-is-better metric.

    Raises:
        EvaluationError: a baseline score of zero (D_i is undefined, never a pass).
    """
    if not baseline > 0:
        raise EvaluationError(
            f"{what}: the baseline scored {baseline}; retention against zero "
            "is undefined: check the task and the baseline model"
        )
    return (1.0 - compressed / baseline) * 100.0


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


def run_sequential(
    baseline: ScoredModel,
    compressed: ScoredModel,
    name: str,
    bench: Benchmark,
    tasks: TaskIndex,
    where: str,
    threshold: float,
) -> Comparison:
    """D_<name> in mode sequential: both models score the benchmark's items in one seeded
    random order, ``sequential_batch`` at a time (quantgate.verdicts.sequential.drive), until the
    confidence sequence decides or the items run out. Each batch is scored through lm-eval's
    ``samples`` and cached like any result, so a rerun, a later night or a full run reads what
    was scored.

    Raises:
        ConfigError: a metric whose score is not the mean of per-item values in [0, 1].
    """
    n = population_size(bench, tasks, where)
    what = f"{bench.task} {bench.metric}"
    used: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def score_batch(batch: list[int]) -> None:
        base = run_benchmark(baseline, name, bench, tasks, where, samples=batch)
        comp = run_benchmark(compressed, name, bench, tasks, where, samples=batch)
        for result in (base, comp):
            _check_item_mean(result, where)
        rank = {doc: i for i, doc in enumerate(batch)}
        used.extend(sorted(paired_items(base, comp, what), key=lambda bc: rank[bc[0]["doc_id"]]))

    def look_open(open_bounds: Collection[str]) -> dict[str, SequentialVerdict]:
        b = np.array([float(bi[bench.metric]) for bi, _ in used])
        c = np.array([float(ci[bench.metric]) for _, ci in used])
        return {name: look(b, c, n, threshold)}

    def say(_: str, state: SequentialVerdict) -> None:
        progress.say(
            f"{compressed.artifact.label}: {name} sequential, {state.n_used}/{n} items: D "
            f"{state.estimate:.3g} %, 95 % sequence [{state.low:.3g}, {state.high:.3g}] vs "
            f"{threshold:g}: {state.decision}"
        )

    stops = drive(n, bench.sequential_batch, score_batch, look_open, [name], say)
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
