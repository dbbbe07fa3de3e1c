"""Run state of one pytest session: registry, thresholds, artifacts, loaded backends, results."""

from __future__ import annotations

import json
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantgate.artifacts import Artifact, ArtifactStore
from quantgate.backends import Backend, backend_class
from quantgate.errors import ConfigError, EvaluationError
from quantgate.gates import Outcome, enforce, judge
from quantgate.quality import QualityEvaluator, QualityResult
from quantgate.registry import BackendSettings, Pair, Registry
from quantgate.report import ROW_PROPERTY, outcome_row
from quantgate.retention import BenchmarkResult, Comparison, TaskIndex, run_benchmark
from quantgate.stats import Interval
from quantgate.thresholds import Thresholds
from quantgate.throughput import Workload, peak_memory, workloads

RecordProperty = Callable[[str, object], None]


class GateSession:
    """Owns everything a gate test needs, so tests stay a few lines long.

    Args:
        registry: the validated models.yaml.
        thresholds: the validated thresholds/ directory.
        n_threads: overrides every entry's backend_settings.n_threads when given.
        max_loaded: models kept loaded at once (baseline + the variant under test).
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
    ) -> None:
        self.registry = registry
        self.thresholds = thresholds
        self.n_threads = n_threads
        self.max_loaded = max_loaded
        #: where relative data paths of local lm-eval tasks start (the pytest rootdir)
        self.root = root or registry.path.parent.parent
        self.reports_dir = reports_dir
        self.baseline_mode = baseline_mode
        self._tasks: TaskIndex | None = None
        self._comparisons: dict[tuple[str, str], Comparison] = {}
        self.artifacts = ArtifactStore(registry)
        self._backends: OrderedDict[str, Backend] = OrderedDict()
        self._evaluators: dict[str, QualityEvaluator] = {}
        self._baseline_memory: dict[str, dict[str, float | None]] = {}
        #: seconds each artifact took to load (first load in this session), for the reports
        self.load_seconds: dict[str, float] = {}

    # -- loading -------------------------------------------------------------------------------
    def settings(self, model_key: str) -> BackendSettings:
        settings = self.registry.models[model_key].backend_settings
        if self.n_threads:
            settings = settings.model_copy(update={"n_threads": self.n_threads})
        return settings

    def backend(
        self, artifact: Artifact, model_key: str, settings: BackendSettings | None = None
    ) -> Backend:
        """A loaded backend for ``artifact``, reused across tests; least recently used evicted."""
        settings = settings or self.settings(model_key)
        key = f"{artifact.label}:{settings.model_dump_json()}"
        if key in self._backends:
            self._backends.move_to_end(key)
            return self._backends[key]
        while len(self._backends) >= self.max_loaded:
            _, old = self._backends.popitem(last=False)
            old.close()
        cls = backend_class(self.registry.models[model_key].backend)
        start = time.perf_counter()
        backend = cls(artifact, settings)
        self.load_seconds.setdefault(artifact.label, time.perf_counter() - start)
        self._backends[key] = backend
        return backend

    def baseline_backend(self, model_key: str) -> Backend:
        return self.backend(self.artifacts.baseline(model_key), model_key)

    def variant_backend(self, pair: Pair) -> Backend:
        return self.backend(self.artifacts.variant(pair), pair.model_key)

    def noise_settings(self, model_key: str) -> BackendSettings:
        """The baseline's settings with a quarter of the batch size: the same weights, a
        different split of the matrix products, so only floating-point noise differs."""
        settings = self.settings(model_key)
        return settings.model_copy(update={"n_batch": max(16, settings.n_batch // 4)})

    def close(self) -> None:
        while self._backends:
            self._backends.popitem()[1].close()

    # -- measurements --------------------------------------------------------------------------
    def evaluator(self, model_key: str) -> QualityEvaluator:
        if model_key not in self._evaluators:
            ppl = self.registry.evaluation_for(model_key).perplexity
            self._evaluators[model_key] = QualityEvaluator(ppl, self.registry.resolve(ppl.text))
        return self._evaluators[model_key]

    def quality(self, pair: Pair) -> QualityResult:
        """PPL/KLD of the pair's variant vs its baseline (disk-cached; the backends are loaded
        only when the cache misses)."""
        return self._compare(
            pair.model_key,
            self.artifacts.variant(pair),
            self.settings(pair.model_key),
            lambda: self.variant_backend(pair),
        )

    def _compare(
        self,
        model_key: str,
        artifact: Artifact,
        settings: BackendSettings,
        load: Callable[[], Backend],
    ) -> QualityResult:
        """PPL/KLD of ``artifact`` (loaded by ``load`` only on a cache miss) vs the baseline."""
        evaluator, name = self.evaluator(model_key), self.registry.models[model_key].backend
        base = evaluator.baseline(
            _Lazy(
                lambda: self.baseline_backend(model_key),
                self.artifacts.baseline(model_key),
                self.settings(model_key),
                name,
            )
        )
        return evaluator.compare(base, _Lazy(load, artifact, settings, name))

    def noise_floor(self, model_key: str) -> tuple[QualityResult, dict[str, Comparison]]:
        """The baseline compared with itself (see noise_settings): self-KLD, self-PPL change and,
        per benchmark, self-flips. Cached like any variant's results."""
        artifact, noisy = self.artifacts.baseline(model_key), self.noise_settings(model_key)

        def load() -> Backend:
            return self.backend(artifact, model_key, noisy)

        quality = self._compare(model_key, artifact, noisy, load)
        comparisons = {}
        for name in self.registry.models[model_key].benchmarks:
            base = self._benchmark(self.baseline_backend(model_key), model_key, name)
            comparisons[name] = Comparison(
                name, base.score, self._benchmark(load(), model_key, name), base
            )
        return quality, comparisons

    def baseline_workload(self, model_key: str, kind: str) -> Workload:
        """The baseline's pp or tg workload, timed alongside a variant's (never cached on disk:
        speed depends on the machine's load now)."""
        backend = self.baseline_backend(model_key)
        tp = self.registry.evaluation_for(model_key).throughput
        return workloads(backend, tp, self.settings(model_key).seed)[kind]

    def baseline_memory(self, model_key: str) -> dict[str, float | None]:
        if model_key not in self._baseline_memory:
            self._baseline_memory[model_key] = peak_memory(
                self.artifacts.baseline(model_key),
                self.settings(model_key),
                self.registry.models[model_key].backend,
            )
        return self._baseline_memory[model_key]

    def footprint(self, pair: Pair) -> dict[str, Any]:
        """Size facts of the variant and its baseline: file bytes, or for a load-time
        quantization (no file of its own) the loaded weights' bytes of both."""
        variant, baseline = self.artifacts.variant(pair), self.artifacts.baseline(pair.model_key)
        if "quantization" in variant.notes:
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
            **peak_memory(
                variant, self.settings(pair.model_key), self.registry.models[pair.model_key].backend
            ),
            **{f"baseline_{k}": v for k, v in self.baseline_memory(pair.model_key).items()},
            "load_seconds": self._load_time(pair),
        }

    def _load_time(self, pair: Pair) -> float:
        label = self.artifacts.variant(pair).label
        if label not in self.load_seconds:
            self.variant_backend(pair)
        return self.load_seconds[label]

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
            self._comparisons[pair.id, name] = self._retention(pair, name)
        return self._comparisons[pair.id, name]

    def _retention(self, pair: Pair, name: str) -> Comparison:
        bench = pair.model.benchmarks[name]
        where = f"models.{pair.model_key}.benchmarks.{name}"
        comp = self._benchmark(self.variant_backend(pair), pair.model_key, name)
        if self.baseline_mode == "pinned":
            if bench.pinned_baseline is None:
                raise ConfigError(
                    f"{where}: --baseline pinned, but the entry has no "
                    "pinned_baseline; add one or use --baseline live"
                )
            return Comparison(name, bench.pinned_baseline, comp)
        base = self._benchmark(self.baseline_backend(pair.model_key), pair.model_key, name)
        if base.n_items != comp.n_items:
            raise EvaluationError(
                f"{where}: baseline scored {base.n_items} items, "
                f"{pair.id} {comp.n_items}; they must see the same items"
            )
        self._save_items(pair, name, base, comp)
        return Comparison(name, base.score, comp, base)

    def _save_items(
        self, pair: Pair, name: str, base: BenchmarkResult, comp: BenchmarkResult
    ) -> None:
        """reports/items/<pair>-<bench>.jsonl: every item of both runs; reports/flips/ the same
        for the items whose correctness changed, with each model's answer and margin."""
        if self.reports_dir is None:
            return
        items, flipped = self.reports_dir / "items", self.reports_dir / "flips"
        items.mkdir(parents=True, exist_ok=True)
        flipped.mkdir(parents=True, exist_ok=True)
        metric = comp.metric
        with (
            (items / f"{pair.id}-{name}.jsonl").open("w") as all_f,
            (flipped / f"{pair.id}-{name}.jsonl").open("w") as flip_f,
        ):
            for b, c in zip(base.items, comp.items, strict=True):
                record = {
                    "benchmark": name,
                    "task": comp.task,
                    "doc_id": b["doc_id"],
                    "target": b["target"],
                    "baseline": b,
                    "compressed": c,
                }
                all_f.write(json.dumps(record) + "\n")
                if (
                    b.get(metric) in (0.0, 1.0)
                    and c.get(metric) in (0.0, 1.0)
                    and (b[metric] != c[metric])
                ):
                    flip = {
                        "doc_id": b["doc_id"],
                        "target": b["target"],
                        "direction": "correct->wrong" if b[metric] else "wrong->correct",
                        "baseline_answer": b.get("chosen"),
                        "compressed_answer": c.get("chosen"),
                        "baseline_margin": _margin(b),
                        "compressed_margin": _margin(c),
                    }
                    flip_f.write(json.dumps(flip) + "\n")

    # -- verdicts ------------------------------------------------------------------------------
    def check(
        self,
        pair: Pair,
        gate: str,
        measured: dict[str, float],
        record_property: RecordProperty,
        baselines: dict[str, float] | None = None,
        report: Callable[[str], None] = print,
        intervals: dict[str, Interval] | None = None,
        resolution: dict[str, float] | None = None,
        extra: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Judge every metric, record each as JUnit properties and a summary row, print one
        line per metric, then fail once listing every breach.

        ``resolution``: the CI half-width the sample can give, per metric (the power check);
        ``extra``: more fields for a metric's summary row (flips, item counts).
        """
        outcomes = judge(
            gate,
            measured,
            self.thresholds.for_pair(pair.model_key, pair.compression_name),
            baselines,
            intervals,
        )
        for o in outcomes:
            _power_check(pair, o, (resolution or {}).get(o.metric), record_property)
        for o in outcomes:
            record_property(o.metric, f"{o.value:.6g}")
            if o.interval is not None:
                record_property(
                    f"{o.metric}.ci95", f"[{o.interval.low:.6g}, {o.interval.high:.6g}]"
                )
            if o.threshold is not None:
                record_property(f"{o.metric}.threshold", f"{o.threshold.value:g}")
                record_property(f"{o.metric}.threshold_origin", o.threshold.origin)
            if o.baseline is not None:
                record_property(f"{o.metric}.baseline", f"{o.baseline:.6g}")
            record_property(f"{o.metric}.verdict", o.verdict)
            row = outcome_row(pair, gate, o) | (extra or {}).get(o.metric, {})
            record_property(ROW_PROPERTY, json.dumps(row))
            report(f"{pair.id} {o.line()}")
        enforce(pair.id, gate, outcomes)


def _margin(item: dict[str, Any]) -> float | None:
    """Log-likelihood of the target choice minus the best other choice (> 0: right answer)."""
    lls, target = item.get("loglikelihoods") or [], item.get("target")
    if not isinstance(target, int) or not 0 <= target < len(lls) or len(lls) < 2:
        return None
    return lls[target] - max(v for i, v in enumerate(lls) if i != target)


class PowerWarning(UserWarning):
    """The sample is too small for the threshold: the gate cannot see a breach of that size."""


def _power_check(
    pair: Pair, o: Outcome, half_width: float | None, record_property: RecordProperty
) -> None:
    """Mode ci only fails when D exceeds the threshold by the CI half-width, so with a half-width
    above the threshold a model losing twice the allowed score still passes: a warning. Mode
    strict fails when the upper bound exceeds the threshold, so with such a half-width even an
    identical model fails: an error, never a verdict."""
    if half_width is None or o.threshold is None or o.threshold.mode == "point":
        return
    if half_width < o.threshold.value:
        return
    message = (
        f"{pair.id} {o.metric}: the sample gives a 95% CI half-width of {half_width:.3g} points, "
        f"not below the threshold {o.threshold.value:g} ({o.threshold.origin}, mode "
        f"{o.threshold.mode}); raise the benchmark's limit or the threshold"
    )
    record_property(f"{o.metric}.power_warning", message)
    if o.threshold.mode == "strict":
        raise EvaluationError(message + ": in strict mode even an identical model would fail")
    warnings.warn(PowerWarning(message), stacklevel=3)


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

    def __getattr__(self, name: str) -> Any:
        if self._backend is None:
            self._backend = self._load()
        return getattr(self._backend, name)
