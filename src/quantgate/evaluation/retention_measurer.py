"""The retention gate's measurer: one benchmark's scores of the baseline and the variant on
the same items through lm-eval (quantgate.evaluation.retention), cached, or in mode sequential batch
by batch until the confidence sequence decides; D_overall over the model's benchmarks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from quantgate.backends.base import ScoredModel
from quantgate.configuration.constants import RETENTION_PREFIX
from quantgate.configuration.registry import Pair
from quantgate.configuration.thresholds import Thresholds
from quantgate.errors import ConfigError
from quantgate.evaluation.comparison import BenchmarkResult, Comparison
from quantgate.evaluation.loading import Loading
from quantgate.evaluation.retention import PairedItems, TaskIndex, run_benchmark, run_sequential
from quantgate.verdicts import measurement
from quantgate.verdicts.gates import Threshold
from quantgate.verdicts.measurement import Measurement
from quantgate.verdicts.recorder import write_items


class RetentionMeasurer:
    """Args:
    baseline_mode: "live" (the baseline scored here) or "pinned" (the entry's
        pinned_baseline scores).
    root: where relative data paths of local lm-eval tasks start (the pytest rootdir).
    reports_dir: where each comparison's per-item records go (reports/items/), if anywhere.
    tasks: the task index the configuration was validated with, reused.
    """

    def __init__(
        self,
        loading: Loading,
        thresholds: Thresholds,
        baseline_mode: str,
        root: Path,
        reports_dir: Path | None = None,
        tasks: TaskIndex | None = None,
    ) -> None:
        self.loading = loading
        self.thresholds = thresholds
        self.baseline_mode = baseline_mode
        self.root = root
        self.reports_dir = reports_dir
        self._tasks = tasks
        self._comparisons: dict[tuple[str, str], Comparison] = {}

    def task_index(self) -> TaskIndex:
        if self._tasks is None:
            registry = self.loading.registry
            folders = [registry.resolve(p) for p in registry.data.evaluation.task_paths]
            self._tasks = TaskIndex(folders, self.root)
        return self._tasks

    def benchmark(self, model: ScoredModel, model_key: str, name: str) -> BenchmarkResult:
        """``model``'s score on the entry's benchmark ``name`` (cached)."""
        bench = self.loading.registry.models[model_key].benchmarks[name]
        where = f"models.{model_key}.benchmarks.{name}"
        return run_benchmark(model, name, bench, self.task_index(), where)

    def sequential_bound(self, pair: Pair, name: str) -> Threshold | None:
        """The benchmark's retention bound if it is judged in mode sequential (scored batch by
        batch as it goes; never with --baseline pinned), else None."""
        bound = self.thresholds.for_pair(pair.model_key, pair.compression_name).get(
            f"{RETENTION_PREFIX}{name}"
        )
        if bound is not None and bound.mode == "sequential" and self.baseline_mode != "pinned":
            return bound
        return None

    def comparison(self, pair: Pair, name: str) -> Comparison:
        """Baseline and compressed results of one benchmark on the same items; per-item
        records of both go to reports/items/ for paired statistics. Once per session for each
        (pair, benchmark): the D_overall test asks again for every benchmark."""
        if (pair.id, name) not in self._comparisons:
            self._comparisons[pair.id, name] = self._compare(pair, name)
        return self._comparisons[pair.id, name]

    def measure(self, pair: Pair, name: str) -> Measurement:
        """The retention gate's measurement of one benchmark
        (quantgate.verdicts.measurement.retention)."""
        m = measurement.retention(self.comparison(pair, name))
        return replace(m, provenance=self.loading.provenance(pair))

    def measure_overall(self, pair: Pair) -> Measurement:
        """D_overall over every benchmark of the model."""
        m = measurement.retention_overall(
            [self.comparison(pair, bench) for bench in pair.model.benchmarks]
        )
        return replace(m, provenance=self.loading.provenance(pair))

    def _compare(self, pair: Pair, name: str) -> Comparison:
        bench = pair.model.benchmarks[name]
        where = f"models.{pair.model_key}.benchmarks.{name}"
        variant = self.loading.lazy_variant(pair)
        if (bound := self.sequential_bound(pair, name)) is not None:
            baseline = self.loading.lazy_baseline(pair.model_key)
            items = PairedItems(baseline, variant, name, bench, self.task_index(), where)
            comparison = run_sequential(items, bound.value)
            self._save_items(pair, comparison)
            return comparison
        comp = self.benchmark(variant, pair.model_key, name)
        if self.baseline_mode == "pinned":
            if bench.pinned_baseline is None:
                raise ConfigError(
                    f"{where}: --baseline pinned, but the entry has no "
                    "pinned_baseline; add one or use --baseline live"
                )
            return Comparison(name, bench.pinned_baseline, comp)
        base = self.benchmark(self.loading.lazy_baseline(pair.model_key), pair.model_key, name)
        comparison = Comparison(name, base.score, comp, base)
        comparison.items  # noqa: B018 - pairs by doc_id now: different item sets are an error
        self._save_items(pair, comparison)
        return comparison

    def _save_items(self, pair: Pair, comparison: Comparison) -> None:
        if self.reports_dir is not None:
            write_items(self.reports_dir, pair.id, comparison)
