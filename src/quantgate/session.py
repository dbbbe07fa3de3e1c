"""Run state of one pytest session: registry, thresholds, artifacts, loaded backends, results."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from quantgate import measurement
from quantgate.artifacts import Artifact, ArtifactStore, source_type_match
from quantgate.backends import Backend, backend_class
from quantgate.backends.pool import BackendPool
from quantgate.constants import (
    ANSWERS_CHANGED_PREFIX,
    CHOICE_KLD_PREFIX,
    FLIPS_PREFIX,
    GOLD_PREFIX,
    RETENTION_PREFIX,
    SEQUENTIAL_CHUNK_METRICS,
    split_benchmark_metric,
)
from quantgate.errors import ConfigError, EvaluationError
from quantgate.gates import Outcome, Threshold, enforce, judge
from quantgate.machine import available_cores
from quantgate.measurement import Measurement
from quantgate.quality import (
    BaselineScores,
    QualityEvaluator,
    QualityResult,
    compare_sequential,
)
from quantgate.quiet import xdist_workers
from quantgate.recorder import Recorder, RecordProperty, write_items
from quantgate.registry import BackendSettings, Pair, Registry, ThroughputSettings
from quantgate.report.rows import outcome_row
from quantgate.retention import (
    BenchmarkResult,
    Comparison,
    TaskIndex,
    run_benchmark,
    run_sequential,
)
from quantgate.rss_probe import peak_memory
from quantgate.tensor_types import RECIPE_NOTES
from quantgate.thresholds import Thresholds
from quantgate.throughput import (
    BaselineRounds,
    Workload,
    interleaved_tokens_per_second,
    tokens_per_second,
    workloads,
)


class Rates(NamedTuple):
    """One throughput measurement: tokens/s of the baseline and the variant."""

    baseline: float
    variant: float
    n_tokens: int
    #: the variant's tokens/s at each tg length, where tg runs several (Study A's TPS)
    variant_by_length: dict[int, float] | None = None


class GateSession:
    """Owns everything a gate test needs, so tests stay a few lines long.

    Args:
        registry: the validated models.yaml.
        thresholds: the validated thresholds/ directory.
        n_threads: overrides every entry's backend_settings.n_threads when given.
        max_loaded: models kept loaded at once (baseline + the variant under test).
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
        self.n_threads = n_threads
        #: where relative data paths of local lm-eval tasks start (the pytest rootdir)
        self.root = root or registry.path.parent.parent
        self.reports_dir = reports_dir
        self.baseline_mode = baseline_mode
        #: warn | error: what an underpowered gate does (see _power_check)
        self.underpowered = underpowered
        #: the task index the configuration was validated with (quantgate.validation), reused
        self._tasks = tasks
        self._comparisons: dict[tuple[str, str], Comparison] = {}
        self.artifacts = ArtifactStore(registry)
        self.pool = BackendPool(max_loaded, in_child)
        self._evaluators: dict[str, QualityEvaluator] = {}
        self._baseline_memory: dict[str, dict[str, float | None]] = {}
        #: a one-model-per-process backend's baseline tokens/s, per (model, pp|tg)
        self._baseline_rates: dict[tuple[str, str], float] = {}
        #: pairs whose engines did their gates' work one engine after the other
        #: (_use_engines_once)
        self._engines_used: set[str] = set()

    # -- loading -------------------------------------------------------------------------------
    def settings(self, model_key: str) -> BackendSettings:
        """The entry's backend settings; ``--threads`` overrides the thread count, and under
        pytest-xdist an unset one is the worker's share of the cores (two workers of two
        threads each on two cores spin against each other; the timed sections, which run
        alone, still use every core: see timing_threads)."""
        settings = self.registry.models[model_key].backend_settings
        if self.n_threads:
            settings = settings.model_copy(update={"n_threads": self.n_threads})
        elif settings.n_threads is None and xdist_workers() > 1:
            share = max(1, available_cores() // xdist_workers())
            settings = settings.model_copy(update={"n_threads": share})
        return settings

    def timing_threads(self, model_key: str) -> int:
        """Threads for timed sections: what a serial run uses (they run alone)."""
        configured = self.n_threads or self.registry.models[model_key].backend_settings.n_threads
        return configured or available_cores()

    def backend(
        self, artifact: Artifact, model_key: str, settings: BackendSettings | None = None
    ) -> Backend:
        """A loaded backend for ``artifact``, reused across tests (``BackendPool``)."""
        entry = self.registry.models[model_key]

        def configure(backend: Backend) -> None:
            backend.timing_threads = self.timing_threads(model_key)
            backend.shared_cores = xdist_workers() > 1 and not (
                self.n_threads or entry.backend_settings.n_threads
            )

        return self.pool.get(
            artifact, settings or self.settings(model_key), entry.backend, configure
        )

    def baseline_backend(self, model_key: str) -> Backend:
        return self.backend(self.artifacts.baseline(model_key), model_key)

    def variant_backend(self, pair: Pair) -> Backend:
        return self.backend(self.artifacts.variant(pair), pair.model_key)

    def noise_settings(self, model_key: str) -> BackendSettings:
        """The baseline's settings with its arithmetic perturbed (``BackendSettings.perturbed``:
        for llama.cpp the other KV-cache precision and a quarter of the batch size). The same
        weights, so what differs is floating-point noise of the kind another machine's kernels
        bring, somewhat larger."""
        return self.settings(model_key).perturbed()

    def close(self) -> None:
        self.pool.close()

    # -- measurements --------------------------------------------------------------------------
    def evaluator(self, model_key: str) -> QualityEvaluator:
        if model_key not in self._evaluators:
            ppl = self.registry.evaluation_for(model_key).perplexity
            self._evaluators[model_key] = QualityEvaluator(ppl, self.registry.resolve(ppl.text))
        return self._evaluators[model_key]

    def quality(self, pair: Pair) -> QualityResult:
        """PPL/KLD of the pair's variant vs its baseline (disk-cached; the backends are loaded
        only when the cache misses). Bounds in mode sequential on SEQUENTIAL_CHUNK_METRICS score
        the chunks in batches until their confidence sequences decide (compare_sequential)."""
        bounds = self.thresholds.for_pair(pair.model_key, pair.compression_name)
        sequential = {
            name: bound.value
            for name in SEQUENTIAL_CHUNK_METRICS
            if (bound := bounds.get(name)) is not None and bound.mode == "sequential"
        }
        return self._compare(
            pair.model_key,
            self.artifacts.variant(pair),
            self.settings(pair.model_key),
            lambda: self.variant_backend(pair),
            sequential,
        )

    def _compare(
        self,
        model_key: str,
        artifact: Artifact,
        settings: BackendSettings,
        load: Callable[[], Backend],
        sequential: dict[str, float] | None = None,
    ) -> QualityResult:
        """PPL/KLD of ``artifact`` (loaded by ``load`` only on a cache miss) vs the baseline;
        ``sequential``: the bounds (metric: value) judged in mode sequential, if any."""
        evaluator, name = self.evaluator(model_key), self.registry.models[model_key].backend
        base = evaluator.baseline(self._lazy_baseline(model_key))
        variant = _Lazy(load, artifact, settings, name)
        if sequential:
            batch = evaluator.settings.sequential_batch
            return compare_sequential(evaluator, base, variant, sequential, batch)
        return evaluator.compare(base, variant)

    def baselines(self, model_key: str) -> tuple[BaselineScores, dict[str, BenchmarkResult]]:
        """What every pair of the model compares against, computed once (or read from the
        cache, or the shared store): the baseline's PPL/KLD log-probs and its score on each
        benchmark. Timing is not among them: tokens/s ratios are measured within one run."""
        baseline = self._lazy_baseline(model_key)
        scores = self.evaluator(model_key).baseline(baseline)
        benchmarks = self.registry.models[model_key].benchmarks
        return scores, {b: self._benchmark(baseline, model_key, b) for b in benchmarks}

    def noise_floor(self, model_key: str) -> tuple[QualityResult, dict[str, Comparison]]:
        """The baseline compared with itself with its arithmetic perturbed (noise_settings):
        self-KLD, self-PPL change and, per benchmark, every retention metric. Cached like any
        variant's results."""
        artifact, noisy = self.artifacts.baseline(model_key), self.noise_settings(model_key)
        name = self.registry.models[model_key].backend
        perturbed = _Lazy(lambda: self.backend(artifact, model_key, noisy), artifact, noisy, name)
        quality = self._compare(model_key, artifact, noisy, lambda: perturbed._get())
        comparisons = {}
        for bench in self.registry.models[model_key].benchmarks:
            base = self._benchmark(self._lazy_baseline(model_key), model_key, bench)
            comparisons[bench] = Comparison(
                bench, base.score, self._benchmark(perturbed, model_key, bench), base
            )
        return quality, comparisons

    def _lazy_variant(self, pair: Pair) -> Backend:
        """The variant's backend, loaded only when a cache misses."""
        return _Lazy(  # type: ignore[return-value]
            lambda: self.variant_backend(pair),
            self.artifacts.variant(pair),
            self.settings(pair.model_key),
            pair.model.backend,
        )

    def _lazy_baseline(self, model_key: str) -> Backend:
        """The baseline's backend, loaded only when a cache misses."""
        return _Lazy(  # type: ignore[return-value]
            lambda: self.baseline_backend(model_key),
            self.artifacts.baseline(model_key),
            self.settings(model_key),
            self.registry.models[model_key].backend,
        )

    def tokens_per_second(self, pair: Pair, kind: str, benchmark: Any) -> Rates:
        """Baseline and variant tokens/s of one workload (llama-bench's pp or tg), the variant's
        rounds recorded by pytest-benchmark. Rounds alternate between the two models, so a
        neighbour's load hits both alike; a backend that holds one model per process (vLLM)
        times the baseline first, once per session, then the variant alone."""
        settings = pair.evaluation.throughput
        one_at_a_time = backend_class(pair.model.backend).one_per_process
        if one_at_a_time:
            self._use_engines_once(pair)
        baseline_rate = self._baseline_rate(pair.model_key, kind) if one_at_a_time else None
        seed = self.settings(pair.model_key).seed
        workload = workloads(self.variant_backend(pair), settings, seed)[kind]
        if baseline_rate is not None:
            tps = _variant_rate(workload, settings, benchmark)
        elif benchmark.disabled:  # --benchmark-disable or xdist: same protocol, timed here
            baseline = self.baseline_workload(pair.model_key, kind)
            baseline_rate, tps = interleaved_tokens_per_second(baseline, workload, settings)
        else:
            rounds = BaselineRounds(self.baseline_workload(pair.model_key, kind))
            tps = _variant_rate(workload, settings, benchmark, setup=rounds)
            baseline_rate = rounds.tokens_per_second(settings.rounds)
        by_length = workload.rates_by_length(settings.rounds) or None
        return Rates(baseline_rate, tps, workload.n_tokens, by_length)

    def _baseline_rate(self, model_key: str, kind: str) -> float:
        """The baseline's tokens/s timed alone, once per session (one model per process)."""
        if (model_key, kind) not in self._baseline_rates:
            settings = self.registry.evaluation_for(model_key).throughput
            base = self.baseline_workload(model_key, kind)
            self._baseline_rates[model_key, kind] = tokens_per_second(base, settings)
        return self._baseline_rates[model_key, kind]

    def baseline_workload(self, model_key: str, kind: str) -> Workload:
        """The baseline's pp or tg workload, timed alongside a variant's (never cached on disk:
        speed depends on the machine's load now)."""
        backend = self.baseline_backend(model_key)
        tp = self.registry.evaluation_for(model_key).throughput
        return workloads(backend, tp, self.settings(model_key).seed)[kind]

    def _probe_memory(self, artifact: Artifact, model_key: str) -> dict[str, float | None]:
        """Peak memory of ``artifact`` loaded alone in a fresh process (quantgate.rss_probe).
        A backend whose model lives in processes of its own (vLLM's engine) measured them as it
        loaded (Backend.deployed_memory): the session's engine is that fresh process, and a
        probe would start a second engine (on a GPU, beside the first: no memory left)."""
        backend = self.registry.models[model_key].backend
        if backend_class(backend).one_per_process:
            if artifact.label not in self.pool.deployed_memory:
                self.backend(artifact, model_key)
            if (measured := self.pool.deployed_memory.get(artifact.label)) is not None:
                return measured
            self.pool.close()  # an engine inside this process: probe it alone
        return peak_memory(artifact, self.settings(model_key), backend)

    def baseline_memory(self, model_key: str) -> dict[str, float | None]:
        if model_key not in self._baseline_memory:
            self._baseline_memory[model_key] = self._probe_memory(
                self.artifacts.baseline(model_key), model_key
            )
        return self._baseline_memory[model_key]

    def footprint(self, pair: Pair) -> dict[str, Any]:
        """Size facts of the variant and its baseline: file bytes, or for a load-time
        quantization (no file of its own) the loaded weights' bytes of both."""
        if backend_class(pair.model.backend).one_per_process:
            self._use_engines_once(pair)
        variant, baseline = self.artifacts.variant(pair), self.artifacts.baseline(pair.model_key)
        if pair.compression.loaded_weights:  # the method makes no file (load-time quantization)
            size = self.variant_backend(pair).memory_bytes()
            base_size = self.baseline_backend(pair.model_key).memory_bytes()
            assert size is not None and base_size is not None
            measure = "loaded weights"
        else:
            size, base_size, measure = variant.info.file_size, baseline.info.file_size, "file"
        return {
            "file_size_bytes": size,
            "baseline_file_size_bytes": base_size,
            "size_measured_as": measure,
            "bits_per_weight": size * 8 / variant.info.n_params
            if measure != "file"
            else variant.info.bits_per_weight,
            "baseline_bits_per_weight": baseline.info.bits_per_weight,
            "n_blocks": variant.info.n_layers,
            "pruned_blocks": variant.notes.get("pruned_blocks"),
            "imatrix": variant.notes.get("imatrix"),
            # a mixed-precision recipe's per-tensor types, where the entry has them
            **{k: variant.notes[k] for k in RECIPE_NOTES if k in variant.notes},
            **self._probe_memory(variant, pair.model_key),
            **{f"baseline_{k}": v for k, v in self.baseline_memory(pair.model_key).items()},
            "load_seconds": self._load_time(pair),
            "sparsity": self.variant_backend(pair).weight_sparsity(),
        }

    def _load_time(self, pair: Pair) -> float:
        label = self.artifacts.variant(pair).label
        if label not in self.pool.load_seconds:
            self.variant_backend(pair)
        return self.pool.load_seconds[label]

    def task_index(self) -> TaskIndex:
        if self._tasks is None:
            folders = [self.registry.resolve(p) for p in self.registry.data.evaluation.task_paths]
            self._tasks = TaskIndex(folders, self.root)
        return self._tasks

    def _benchmark(self, backend: Backend, model_key: str, name: str) -> BenchmarkResult:
        bench = self.registry.models[model_key].benchmarks[name]
        where = f"models.{model_key}.benchmarks.{name}"
        return run_benchmark(backend, name, bench, self.task_index(), where)

    def retention(self, pair: Pair, name: str) -> Comparison:
        """Baseline and compressed results of one benchmark on the same items; per-item
        records of both go to reports/items/ for paired statistics. Once per session for each
        (pair, benchmark): the D_overall test asks again for every benchmark."""
        if (pair.id, name) not in self._comparisons:
            if backend_class(pair.model.backend).one_per_process:
                self._use_engines_once(pair)
            self._comparisons[pair.id, name] = self._retention(pair, name)
        return self._comparisons[pair.id, name]

    def _sequential_bound(self, pair: Pair, name: str) -> Threshold | None:
        """The benchmark's retention bound if it is judged in mode sequential (scored batch by
        batch as it goes; never with --baseline pinned), else None."""
        bound = self.thresholds.for_pair(pair.model_key, pair.compression_name).get(
            f"{RETENTION_PREFIX}{name}"
        )
        if bound is not None and bound.mode == "sequential" and self.baseline_mode != "pinned":
            return bound
        return None

    def _use_engines_once(self, pair: Pair) -> None:
        """A backend that holds one model per process (vLLM) loads the baseline and the variant
        in turn, an engine start each (a minute or more on a CPU). The first of a pair's gates
        to run does, engine by engine, what every gate of the pair needs from it: on the
        baseline's (once per session) its benchmarks' scores (into the results cache), its
        tokens/s and its footprint's memory; then on the variant's the same but its tokens/s,
        which its throughput tests time while that engine stays loaded. Gate by gate, the
        engines alternated (measured: thirteen starts, and 22 minutes for a two-pair run on 2
        cores; 8.7 minutes with three starts). Benchmarks judged in mode sequential, or against
        a pinned baseline, are scored as they go."""
        if pair.id in self._engines_used:
            return
        self._engines_used.add(pair.id)
        skip = pair.compression.skip
        names = [
            n
            for n in pair.model.benchmarks
            if "retention" not in skip
            and f"retention.{n}" not in skip
            and self.baseline_mode != "pinned"
            and self._sequential_bound(pair, n) is None
        ]
        baseline = self._lazy_baseline(pair.model_key)
        for n in names:
            self._benchmark(baseline, pair.model_key, n)
        if "throughput" not in skip:
            for kind in ("pp", "tg"):
                self._baseline_rate(pair.model_key, kind)
        if "footprint" not in skip:
            self.baseline_memory(pair.model_key)
        variant = self._lazy_variant(pair)
        for n in names:
            self._benchmark(variant, pair.model_key, n)
        if "footprint" not in skip:
            self._probe_memory(self.artifacts.variant(pair), pair.model_key)

    def measure_retention(self, pair: Pair, name: str) -> Measurement:
        """The retention gate's measurement of one benchmark (quantgate.measurement.retention)."""
        return measurement.retention(self.retention(pair, name))

    def measure_retention_overall(self, pair: Pair) -> Measurement:
        """D_overall over every benchmark of the model."""
        return measurement.retention_overall(
            [self.retention(pair, bench) for bench in pair.model.benchmarks]
        )

    def measure_perplexity(self, pair: Pair) -> Measurement:
        return measurement.perplexity(self.quality(pair))

    def measure_kld(self, pair: Pair) -> Measurement:
        return measurement.kld(self.quality(pair))

    def measure_throughput(self, pair: Pair, kind: str, benchmark: Any) -> Measurement:
        """pp or tg against the baseline (``tokens_per_second``); pytest-benchmark's record of
        the rounds gets the pair and both rates."""
        rates = self.tokens_per_second(pair, kind, benchmark)
        benchmark.extra_info.update(
            {
                "model": pair.model_key,
                "compression": pair.compression_name,
                "kind": kind,
                "n_tokens": rates.n_tokens,
                "tokens_per_s": rates.variant,
                "baseline_tokens_per_s": rates.baseline,
                "threads": self.variant_backend(pair).settings.n_threads or "all",
            }
        )
        return measurement.throughput(kind, rates.variant, rates.baseline, rates.variant_by_length)

    def measure_footprint(self, pair: Pair) -> Measurement:
        return measurement.footprint(self.footprint(pair))

    def _retention(self, pair: Pair, name: str) -> Comparison:
        bench = pair.model.benchmarks[name]
        where = f"models.{pair.model_key}.benchmarks.{name}"
        variant = self._lazy_variant(pair)
        if (bound := self._sequential_bound(pair, name)) is not None:
            comparison = run_sequential(
                self._lazy_baseline(pair.model_key),
                variant,
                name,
                bench,
                self.task_index(),
                where,
                bound.value,
            )
            self._save_items(pair, comparison)
            return comparison
        comp = self._benchmark(variant, pair.model_key, name)
        if self.baseline_mode == "pinned":
            if bench.pinned_baseline is None:
                raise ConfigError(
                    f"{where}: --baseline pinned, but the entry has no "
                    "pinned_baseline; add one or use --baseline live"
                )
            return Comparison(name, bench.pinned_baseline, comp)
        base = self._benchmark(self._lazy_baseline(pair.model_key), pair.model_key, name)
        comparison = Comparison(name, base.score, comp, base)
        comparison.items  # noqa: B018 - pairs by doc_id now: different item sets are an error
        self._save_items(pair, comparison)
        return comparison

    def _save_items(self, pair: Pair, comparison: Comparison) -> None:
        if self.reports_dir is not None:
            write_items(self.reports_dir, pair.id, comparison)

    # -- verdicts ------------------------------------------------------------------------------
    def check(
        self,
        pair: Pair,
        measured: Measurement,
        record_property: RecordProperty,
        report: Callable[[str], None] = print,
    ) -> None:
        """Judge every metric of ``measured``, record each (JUnit properties, a summary row, a
        printed line: quantgate.recorder), then fail once listing every breach. A metric the
        test is responsible for whose bound was not measured is an error (a bound never judged
        is never a pass), unless the measurement names it with the reason."""
        recorder = Recorder(record_property, report)
        recorder.properties(measured.properties)
        gate = measured.gate
        bounds = self.thresholds.for_pair(pair.model_key, pair.compression_name)
        for name in measured.responsible:
            if name in bounds and name not in measured.values:
                if (undefined := measured.undefined.get(name)) is not None:
                    raise EvaluationError(
                        f"{pair.id}: {name} has a bound ({bounds[name].origin}) but {undefined}"
                        f"; to leave it ungated for this model, set {name}: null in "
                        f"{self.thresholds.directory / pair.model_key}.yaml"
                    )
                why = measured.not_measured_here.get(name)
                if why is not None:
                    recorder.not_measured(pair.id, name, why)
                    continue
                raise EvaluationError(
                    f"{pair.id}: {name} has a bound ({bounds[name].origin}) but this pair's "
                    f"{gate} test cannot measure it (for {self._unmeasurable_hint(name)}); "
                    "delete the key"
                )
        for name, undefined in measured.undefined.items():
            if name not in bounds:  # reported, so a reader sees why the row is missing
                text = f"{name} not judged (no bound): {undefined}"
                recorder.note(pair.id, f"{name}.verdict", text)
        outcomes = judge(
            gate,
            measured.values,
            bounds,
            measured.baselines,
            measured.intervals,
            measured.decisions,
        )
        baseline = self.artifacts.baseline(pair.model_key)
        provenance = {
            "baseline_provenance": baseline.notes.get("provenance"),
            "source_type_match": source_type_match(pair, baseline),
        }
        if pair.compression.method == "prebuilt":  # the commit its own Hub source resolved to
            variant_commit = self.artifacts.variant(pair).notes.get("hub_commit")
            if variant_commit:
                provenance["variant_hub_commit"] = variant_commit
        if provenance["source_type_match"]:
            recorder.note(pair.id, "source_type_match", provenance["source_type_match"])
        for o in outcomes:
            _power_check(pair, o, record_property, self.underpowered)
        for o in outcomes:
            row = outcome_row(pair, gate, o) | provenance | measured.extra.get(o.metric, {})
            recorder.outcome(pair.id, o, row)
        enforce(pair.id, gate, outcomes)

    @staticmethod
    def _unmeasurable_hint(name: str) -> str:
        split = split_benchmark_metric(name)
        if split is None:
            return "this backend or setting"
        return {
            FLIPS_PREFIX: "flips need a correct/wrong metric",
            GOLD_PREFIX: "Dgold needs a correct/wrong multiple-choice metric with one gold answer",
            CHOICE_KLD_PREFIX: "choice_kld needs multiple-choice items",
            ANSWERS_CHANGED_PREFIX: "answers_changed needs a generation task",
        }.get(split[0], "this benchmark")


def _variant_rate(
    workload: Workload,
    settings: ThroughputSettings,
    benchmark: Any,
    setup: BaselineRounds | None = None,
) -> float:
    """The variant's tokens/s, its rounds recorded by pytest-benchmark (``setup`` times a
    baseline round before each), or timed here when the benchmark fixture is disabled."""
    if benchmark.disabled:
        assert setup is None, "interleaved rounds without pytest-benchmark: use interleaved_*"
        return tokens_per_second(workload, settings)
    benchmark.pedantic(
        workload.run,
        setup=setup,
        rounds=settings.rounds,
        warmup_rounds=settings.warmup_rounds,
        iterations=1,
    )
    return workload.tokens_per_second(settings.rounds, benchmark.stats.stats.mean)


def _power_check(pair: Pair, o: Outcome, record_property: RecordProperty, action: str) -> None:
    """From the measured interval (the paired variance this sample shows):

    * a loss bound whose gate cannot see a loss of twice the bound (its minimum detectable
      loss, at 80 % power, lies beyond 2x the threshold) is underpowered: recorded (a JUnit
      property; the summary row says so and the terminal summary lists every such gate in
      one block: quantgate.report.collector), or with ``--underpowered=error`` an error;
    * mode strict fails when the upper bound exceeds the threshold, so with a half-width at or
      above the threshold even an identical model fails: an error, never a verdict."""
    if o.threshold is None or o.interval is None:
        return
    where = f"{o.threshold.origin}, mode {o.threshold.mode}"
    if o.threshold.mode == "strict" and o.interval.half_width >= o.threshold.value > 0:
        raise EvaluationError(
            f"{pair.id} {o.metric}: the sample gives a 95% CI half-width of "
            f"{o.interval.half_width:.3g}, not below the threshold {o.threshold.value:g} "
            f"({where}): in strict mode even an identical model would fail; raise the "
            "benchmark's limit or use mode ci"
        )
    if not o.underpowered:
        return
    message = (
        f"{pair.id} {o.metric}: underpowered: the smallest loss this sample detects (80 % power) "
        f"is {o.minimum_detectable:.3g}, beyond twice the threshold {o.threshold.value:g} "
        f"({where}); raise the benchmark's limit, gate a graded metric, or raise the threshold"
    )
    record_property(f"{o.metric}.power_warning", message)
    if action == "error":
        raise EvaluationError(message + " (--underpowered=error)")


class _Lazy:
    """Stands in for a Backend until a method is called, so a cache hit never loads a model."""

    def __init__(
        self, load: Callable[[], Backend], artifact: Artifact, settings: BackendSettings, name: str
    ) -> None:
        self._load = load
        self.artifact = artifact
        self.settings = settings
        self.name = name
        self._backend: Backend | None = None

    def _get(self) -> Backend:
        if self._backend is None:
            self._backend = self._load()
        return self._backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)
