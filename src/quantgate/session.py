"""One pytest session's gate work, wired together: loading (quantgate.evaluation.loading), one
measurer per gate (quantgate.evaluation), and the judge (quantgate.verdicts.judge). The plugin's
``quantgate`` fixture is a GateSession; a gate test is a measure_* call and ``check``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantgate.backends import backend_class
from quantgate.configuration.registry import Pair, Registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.evaluation.comparison import BenchmarkResult, Comparison
from quantgate.evaluation.footprint_measurer import FootprintMeasurer
from quantgate.evaluation.loading import Loading, registry_root
from quantgate.evaluation.perplexity_measurer import PerplexityMeasurer
from quantgate.evaluation.quality import BaselineScores, QualityResult
from quantgate.evaluation.retention import TaskIndex
from quantgate.evaluation.retention_measurer import RetentionMeasurer
from quantgate.evaluation.throughput_measurer import ThroughputMeasurer
from quantgate.verdicts.judge import Judge
from quantgate.verdicts.measurement import Measurement
from quantgate.verdicts.recorder import RecordProperty


class GateSession:
    """Owns everything a gate test needs, so tests stay a few lines long.

    Args:
        registry: the validated models.yaml.
        thresholds: the validated thresholds/ directory.
        n_threads: overrides every entry's backend_settings.n_threads when given.
        max_loaded: models kept loaded at once (baseline + the variant under test).
        root: where relative data paths of local lm-eval tasks start (the pytest rootdir).
        reports_dir: where per-item records go (reports/items/), if anywhere.
        baseline_mode: live | pinned (the entries' pinned_baseline scores).
        underpowered: warn | error: what an underpowered gate does.
        tasks: the task index the configuration was validated with, reused.
        in_child: load the backends that can in child processes (quantgate.backends.child).
    """

    def __init__(
        self,
        registry: Registry,
        thresholds: Thresholds,
        n_threads: int | None = None,
        max_loaded: int = 2,
        root: Path | None = None,
        reports_dir: Path | None = None,
        baseline_mode: str = "live",
        underpowered: str = "warn",
        tasks: TaskIndex | None = None,
        in_child: bool = True,
    ) -> None:
        self.registry = registry
        self.thresholds = thresholds
        self.loading = Loading(registry, n_threads, max_loaded, in_child)
        self.artifacts = self.loading.artifacts
        self.perplexity = PerplexityMeasurer(self.loading, thresholds)
        self.retention = RetentionMeasurer(
            self.loading,
            thresholds,
            baseline_mode,
            registry_root(registry, root),
            reports_dir,
            tasks,
        )
        self.throughput = ThroughputMeasurer(self.loading)
        self.footprint = FootprintMeasurer(self.loading)
        self.judge = Judge(thresholds, underpowered)
        #: pairs whose engines did their gates' work one engine after the other
        #: (_use_engines_once)
        self._engines_used: set[str] = set()

    def close(self) -> None:
        self.loading.close()

    # -- the gates' measurements -----------------------------------------------------------------
    def measure_perplexity(self, pair: Pair) -> Measurement:
        return self.perplexity.measure_perplexity(pair)

    def measure_kld(self, pair: Pair) -> Measurement:
        return self.perplexity.measure_kld(pair)

    def measure_retention(self, pair: Pair, name: str) -> Measurement:
        self._use_engines_once(pair)
        return self.retention.measure(pair, name)

    def measure_retention_overall(self, pair: Pair) -> Measurement:
        self._use_engines_once(pair)
        return self.retention.measure_overall(pair)

    def measure_throughput(self, pair: Pair, kind: str, benchmark: Any) -> Measurement:
        self._use_engines_once(pair)
        return self.throughput.measure(pair, kind, benchmark)

    def measure_footprint(self, pair: Pair) -> Measurement:
        self._use_engines_once(pair)
        return self.footprint.measure(pair)

    def check(
        self,
        pair: Pair,
        measured: Measurement,
        record_property: RecordProperty,
        report: Callable[[str], None] = print,
    ) -> None:
        """The judge's verdicts on ``measured`` (quantgate.verdicts.judge.Judge.check)."""
        self.judge.check(pair, measured, record_property, report)

    # -- what the baseline tests check -----------------------------------------------------------
    def baselines(self, model_key: str) -> tuple[BaselineScores, dict[str, BenchmarkResult]]:
        """What every pair of the model compares against, computed once (or read from the
        cache, or the shared store): the baseline's PPL/KLD log-probs and its score on each
        benchmark. Timing is not among them: tokens/s ratios are measured within one run."""
        baseline = self.loading.lazy_baseline(model_key)
        scores = self.perplexity.baseline_scores(model_key)
        benchmarks = self.registry.models[model_key].benchmarks
        return scores, {b: self.retention.benchmark(baseline, model_key, b) for b in benchmarks}

    def noise_floor(self, model_key: str) -> tuple[QualityResult, dict[str, Comparison]]:
        """The baseline compared with itself with its arithmetic perturbed (noise_settings):
        self-KLD, self-PPL change and, per benchmark, every retention metric. Cached like any
        variant's results."""
        artifact = self.artifacts.baseline(model_key)
        noisy = self.loading.noise_settings(model_key)
        quality = self.perplexity.compare(model_key, artifact, noisy)
        perturbed = self.loading.lazy(artifact, model_key, noisy)
        baseline = self.loading.lazy_baseline(model_key)
        comparisons = {}
        for bench in self.registry.models[model_key].benchmarks:
            base = self.retention.benchmark(baseline, model_key, bench)
            comparisons[bench] = Comparison(
                bench, base.score, self.retention.benchmark(perturbed, model_key, bench), base
            )
        return quality, comparisons

    def _use_engines_once(self, pair: Pair) -> None:
        """A backend that holds one model per process (vLLM) loads the baseline and the variant
        in turn, an engine start each (a minute or more on a CPU). The first of a pair's gates
        to run does, engine by engine, what every gate of the pair needs from it: on the
        baseline's (once per session) its benchmarks' scores (into the results cache), its
        tokens/s and its footprint's memory; then on the variant's the same but its tokens/s,
        which its throughput tests time while that engine stays loaded. Gate by gate, the
        engines alternated (measured: thirteen starts, and 22 minutes for a two-pair run on 2
        cores; 8.7 minutes with three starts). Benchmarks judged in mode sequential, or against
        a pinned baseline, are scored as they go. Other backends: nothing."""
        if pair.id in self._engines_used or not backend_class(pair.model.backend).one_per_process:
            return
        self._engines_used.add(pair.id)
        skip = pair.compression.skip
        names = [
            n
            for n in pair.model.benchmarks
            if "retention" not in skip
            and f"retention.{n}" not in skip
            and self.retention.baseline_mode != "pinned"
            and self.retention.sequential_bound(pair, n) is None
        ]
        baseline = self.loading.lazy_baseline(pair.model_key)
        for n in names:
            self.retention.benchmark(baseline, pair.model_key, n)
        if "throughput" not in skip:
            for kind in ("pp", "tg"):
                self.throughput.baseline_rate(pair.model_key, kind)
        if "footprint" not in skip:
            self.footprint.baseline_memory(pair.model_key)
        variant = self.loading.lazy_variant(pair)
        for n in names:
            self.retention.benchmark(variant, pair.model_key, n)
        if "footprint" not in skip:
            self.footprint.probe_memory(self.artifacts.variant(pair), pair.model_key)
