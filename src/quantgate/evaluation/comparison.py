"""What the retention gate compares: one benchmark's result (score and per-item records) and
the paired comparison of the baseline's and a variant's results on the same items: D_i, its
paired interval, flips, gold-probability retention, choice KLD and changed answers
(quantgate.verdicts.stats computes each from the items). No model, no lm-eval: the results
come from quantgate.evaluation.retention."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from quantgate.configuration.constants import CHOICE_KLD_PREFIX, GOLD_PREFIX
from quantgate.errors import EvaluationError
from quantgate.verdicts.sequential import SequentialVerdict
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
