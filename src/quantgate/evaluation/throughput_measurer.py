"""The throughput gate's measurer: tokens/s of the variant against its baseline on llama-bench's
pp and tg workloads (quantgate.evaluation.throughput), the variant's rounds recorded by
pytest-benchmark. Never cached: speed depends on the machine's load now."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from quantgate.backends import backend_class
from quantgate.configuration.registry import Pair, ThroughputSettings
from quantgate.evaluation.loading import Loading
from quantgate.evaluation.throughput import (
    BaselineRounds,
    Workload,
    interleaved_tokens_per_second,
    tokens_per_second,
    workloads,
)
from quantgate.verdicts import measurement
from quantgate.verdicts.measurement import Measurement


class Rates(NamedTuple):
    """One throughput measurement: tokens/s of the baseline and the variant."""

    baseline: float
    variant: float
    n_tokens: int
    #: the variant's tokens/s at each tg length, where tg runs several (Study A's TPS)
    variant_by_length: dict[int, float] | None = None


class ThroughputMeasurer:
    def __init__(self, loading: Loading) -> None:
        self.loading = loading
        #: a one-model-per-process backend's baseline tokens/s, per (model, pp|tg)
        self._baseline_rates: dict[tuple[str, str], float] = {}

    def rates(self, pair: Pair, kind: str, benchmark: Any) -> Rates:
        """Baseline and variant tokens/s of one workload (llama-bench's pp or tg), the variant's
        rounds recorded by pytest-benchmark. Rounds alternate between the two models, so a
        neighbour's load hits both alike; a backend that holds one model per process (vLLM)
        times the baseline first, once per session, then the variant alone."""
        settings = pair.evaluation.throughput
        one_at_a_time = backend_class(pair.model.backend).one_per_process
        baseline_rate = self.baseline_rate(pair.model_key, kind) if one_at_a_time else None
        seed = self.loading.settings(pair.model_key).seed
        workload = workloads(self.loading.variant_backend(pair), settings, seed)[kind]
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

    def baseline_rate(self, model_key: str, kind: str) -> float:
        """The baseline's tokens/s timed alone, once per session (one model per process)."""
        if (model_key, kind) not in self._baseline_rates:
            settings = self.loading.registry.evaluation_for(model_key).throughput
            base = self.baseline_workload(model_key, kind)
            self._baseline_rates[model_key, kind] = tokens_per_second(base, settings)
        return self._baseline_rates[model_key, kind]

    def baseline_workload(self, model_key: str, kind: str) -> Workload:
        """The baseline's pp or tg workload, timed alongside a variant's."""
        backend = self.loading.baseline_backend(model_key)
        tp = self.loading.registry.evaluation_for(model_key).throughput
        return workloads(backend, tp, self.loading.settings(model_key).seed)[kind]

    def measure(self, pair: Pair, kind: str, benchmark: Any) -> Measurement:
        """pp or tg against the baseline (``rates``); pytest-benchmark's record of the rounds
        gets the pair and both rates."""
        rates = self.rates(pair, kind, benchmark)
        benchmark.extra_info.update(
            {
                "model": pair.model_key,
                "compression": pair.compression_name,
                "kind": kind,
                "n_tokens": rates.n_tokens,
                "tokens_per_s": rates.variant,
                "baseline_tokens_per_s": rates.baseline,
                "threads": self.loading.variant_backend(pair).settings.n_threads or "all",
            }
        )
        m = measurement.throughput(kind, rates.variant, rates.baseline, rates.variant_by_length)
        return replace(m, provenance=self.loading.provenance(pair))


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
