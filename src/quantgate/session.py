"""Run state of one pytest session: registry, thresholds, artifacts, loaded backends, results."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantgate.artifacts import Artifact, ArtifactStore
from quantgate.backends import Backend, backend_class
from quantgate.errors import ConfigError, EvaluationError
from quantgate.gates import enforce, judge
from quantgate.quality import QualityEvaluator, QualityResult
from quantgate.registry import BackendSettings, Pair, Registry
from quantgate.report import ROW_PROPERTY, outcome_row
from quantgate.retention import BenchmarkResult, TaskIndex, run_benchmark
from quantgate.thresholds import Thresholds
from quantgate.throughput import Workload, workloads

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
        self.artifacts = ArtifactStore(registry)
        self._backends: OrderedDict[str, Backend] = OrderedDict()
        self._evaluators: dict[str, QualityEvaluator] = {}
        self._baseline_rss: dict[str, float] = {}

    # -- loading -------------------------------------------------------------------------------
    def settings(self, model_key: str) -> BackendSettings:
        settings = self.registry.models[model_key].backend_settings
        if self.n_threads:
            settings = settings.model_copy(update={"n_threads": self.n_threads})
        return settings

    def backend(self, artifact: Artifact, model_key: str) -> Backend:
        """A loaded backend for ``artifact``, reused across tests; least recently used evicted."""
        if artifact.label in self._backends:
            self._backends.move_to_end(artifact.label)
            return self._backends[artifact.label]
        while len(self._backends) >= self.max_loaded:
            _, old = self._backends.popitem(last=False)
            old.close()
        cls = backend_class(self.registry.models[model_key].backend)
        backend = cls(artifact, self.settings(model_key))
        self._backends[artifact.label] = backend
        return backend

    def baseline_backend(self, model_key: str) -> Backend:
        return self.backend(self.artifacts.baseline(model_key), model_key)

    def variant_backend(self, pair: Pair) -> Backend:
        return self.backend(self.artifacts.variant(pair), pair.model_key)

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
        evaluator = self.evaluator(pair.model_key)
        key, settings = pair.model_key, self.settings(pair.model_key)
        name = self.registry.models[key].backend
        base = evaluator.baseline(
            _Lazy(lambda: self.baseline_backend(key), self.artifacts.baseline(key), settings, name)
        )
        variant = self.artifacts.variant(pair)
        return evaluator.compare(
            base, _Lazy(lambda: self.variant_backend(pair), variant, settings, name)
        )

    def baseline_workload(self, model_key: str, kind: str) -> Workload:
        """The baseline's pp or tg workload, timed alongside a variant's (never cached on disk:
        speed depends on the machine's load now)."""
        backend = self.baseline_backend(model_key)
        tp = self.registry.evaluation_for(model_key).throughput
        return workloads(backend, tp, self.settings(model_key).seed)[kind]

    def baseline_rss_mib(self, model_key: str) -> float:
        from quantgate.throughput import peak_rss_mib

        if model_key not in self._baseline_rss:
            self._baseline_rss[model_key] = peak_rss_mib(
                self.artifacts.baseline(model_key), self.settings(model_key)
            )
        return self._baseline_rss[model_key]

    def task_index(self) -> TaskIndex:
        if self._tasks is None:
            folders = [self.registry.resolve(p) for p in self.registry.data.evaluation.task_paths]
            self._tasks = TaskIndex(folders, self.root)
        return self._tasks

    def retention(self, pair: Pair, name: str) -> tuple[float, BenchmarkResult]:
        """(baseline score, compressed result) of one benchmark on the same items; per-item
        records of both go to reports/items/ for paired statistics."""
        bench = pair.model.benchmarks[name]
        where = f"models.{pair.model_key}.benchmarks.{name}"
        comp = run_benchmark(self.variant_backend(pair), name, bench, self.task_index(), where)
        if self.baseline_mode == "pinned":
            if bench.pinned_baseline is None:
                raise ConfigError(
                    f"{where}: --baseline pinned, but the entry has no "
                    "pinned_baseline; add one or use --baseline live"
                )
            return bench.pinned_baseline, comp
        base = run_benchmark(
            self.baseline_backend(pair.model_key), name, bench, self.task_index(), where
        )
        if base.n_items != comp.n_items:
            raise EvaluationError(
                f"{where}: baseline scored {base.n_items} items, "
                f"{pair.id} {comp.n_items}; they must see the same items"
            )
        self._save_items(pair, name, base, comp)
        return base.score, comp

    def _save_items(
        self, pair: Pair, name: str, base: BenchmarkResult, comp: BenchmarkResult
    ) -> None:
        if self.reports_dir is None:
            return
        folder = self.reports_dir / "items"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{pair.id}-{name}.jsonl").open("w") as f:
            for b, c in zip(base.items, comp.items, strict=True):
                f.write(
                    json.dumps(
                        {
                            "benchmark": name,
                            "task": comp.task,
                            "doc_id": b["doc_id"],
                            "target": b["target"],
                            "baseline": b,
                            "compressed": c,
                        }
                    )
                    + "\n"
                )

    # -- verdicts ------------------------------------------------------------------------------
    def check(
        self,
        pair: Pair,
        gate: str,
        measured: dict[str, float],
        record_property: RecordProperty,
        baselines: dict[str, float] | None = None,
        report: Callable[[str], None] = print,
    ) -> None:
        """Judge every metric, record each as JUnit properties and a summary row, print one
        line per metric, then fail once listing every breach."""
        outcomes = judge(
            gate,
            measured,
            self.thresholds.for_pair(pair.model_key, pair.compression_name),
            baselines,
        )
        for o in outcomes:
            record_property(o.metric, f"{o.value:.6g}")
            if o.threshold is not None:
                record_property(f"{o.metric}.threshold", f"{o.threshold.value:g}")
                record_property(f"{o.metric}.threshold_origin", o.threshold.origin)
            if o.baseline is not None:
                record_property(f"{o.metric}.baseline", f"{o.baseline:.6g}")
            record_property(f"{o.metric}.verdict", o.verdict)
            record_property(ROW_PROPERTY, json.dumps(outcome_row(pair, gate, o)))
            report(f"{pair.id} {o.line()}")
        enforce(pair.id, gate, outcomes)


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
