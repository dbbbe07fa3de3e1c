"""The perplexity and KLD gates' measurer: the variant's log-probs against the baseline's over
the evaluation text's chunks (quantgate.evaluation.quality), cached, or in mode sequential batch by
batch until the bounds' confidence sequences decide."""

from __future__ import annotations

from dataclasses import replace

from quantgate.artifacts.store import Artifact
from quantgate.configuration.constants import SEQUENTIAL_CHUNK_METRICS
from quantgate.configuration.registry import BackendSettings, Pair
from quantgate.configuration.thresholds import Thresholds
from quantgate.evaluation.loading import LazyBackend, Loading
from quantgate.evaluation.quality import (
    BaselineScores,
    QualityEvaluator,
    QualityResult,
    compare_sequential,
)
from quantgate.verdicts import measurement
from quantgate.verdicts.measurement import Measurement


class PerplexityMeasurer:
    def __init__(self, loading: Loading, thresholds: Thresholds) -> None:
        self.loading = loading
        self.thresholds = thresholds
        self._evaluators: dict[str, QualityEvaluator] = {}

    def evaluator(self, model_key: str) -> QualityEvaluator:
        if model_key not in self._evaluators:
            registry = self.loading.registry
            ppl = registry.evaluation_for(model_key).perplexity
            self._evaluators[model_key] = QualityEvaluator(ppl, registry.resolve(ppl.text))
        return self._evaluators[model_key]

    def baseline_scores(self, model_key: str) -> BaselineScores:
        """The baseline's log-probs every variant of the model compares against (computed
        once, or read from the cache or the shared store)."""
        return self.evaluator(model_key).baseline(self.loading.lazy_baseline(model_key))

    def result(self, pair: Pair) -> QualityResult:
        """PPL/KLD of the pair's variant vs its baseline (disk-cached; the backends are loaded
        only when the cache misses). Bounds in mode sequential on SEQUENTIAL_CHUNK_METRICS score
        the chunks in batches until their confidence sequences decide (compare_sequential)."""
        bounds = self.thresholds.for_pair(pair.model_key, pair.compression_name)
        sequential = {
            name: bound.value
            for name in SEQUENTIAL_CHUNK_METRICS
            if (bound := bounds.get(name)) is not None and bound.mode == "sequential"
        }
        artifact = self.loading.artifacts.variant(pair)
        return self.compare(pair.model_key, artifact, None, sequential)

    def compare(
        self,
        model_key: str,
        artifact: Artifact,
        settings: BackendSettings | None = None,
        sequential: dict[str, float] | None = None,
    ) -> QualityResult:
        """PPL/KLD of ``artifact`` (with the entry's settings, or ``settings``; loaded only on
        a cache miss) vs the baseline; ``sequential``: the bounds (metric: value) judged in
        mode sequential, if any."""
        evaluator = self.evaluator(model_key)
        base = evaluator.baseline(self.loading.lazy_baseline(model_key))
        variant: LazyBackend = self.loading.lazy(artifact, model_key, settings)
        if sequential:
            batch = evaluator.settings.sequential_batch
            return compare_sequential(evaluator, base, variant, sequential, batch)
        return evaluator.compare(base, variant)

    def measure_perplexity(self, pair: Pair) -> Measurement:
        return replace(
            measurement.perplexity(self.result(pair)), provenance=self.loading.provenance(pair)
        )

    def measure_kld(self, pair: Pair) -> Measurement:
        return replace(measurement.kld(self.result(pair)), provenance=self.loading.provenance(pair))
