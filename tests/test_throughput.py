"""Throughput (llama-bench protocol: pp = one prompt of n_prompt tokens, tg = n_gen single-token
decodes) and footprint gates. Speed is gated as a ratio to the baseline, whose rounds alternate
with the variant's in the same process, so both see the same machine load.

    pytest tests/test_throughput.py -m smoke --benchmark-columns=mean,rounds
"""

import pytest

from quantgate.throughput import (
    BaselineRounds,
    interleaved_tokens_per_second,
    peak_rss_mib,
    workloads,
)


@pytest.mark.quality_gate("throughput")
@pytest.mark.parametrize("kind", ["pp", "tg"])
def test_throughput(pair, kind, quantgate, benchmark, record_property):
    backend = quantgate.variant_backend(pair)
    settings = pair.evaluation.throughput
    workload = workloads(backend, settings, quantgate.settings(pair.model_key).seed)[kind]
    baseline = quantgate.baseline_workload(pair.model_key, kind)
    if benchmark.disabled:  # --benchmark-disable or xdist: same protocol, timed here
        baseline_tps, tps = interleaved_tokens_per_second(baseline, workload, settings)
    else:
        baseline_rounds = BaselineRounds(baseline)
        benchmark.pedantic(
            workload.run,
            setup=baseline_rounds,
            rounds=settings.rounds,
            warmup_rounds=settings.warmup_rounds,
            iterations=1,
        )
        tps = workload.n_tokens / benchmark.stats.stats.mean
        baseline_tps = baseline_rounds.tokens_per_second(settings.rounds)
    benchmark.extra_info.update(
        {
            "model": pair.model_key,
            "compression": pair.compression_name,
            "kind": kind,
            "n_tokens": workload.n_tokens,
            "tokens_per_s": tps,
            "baseline_tokens_per_s": baseline_tps,
            "threads": backend.settings.n_threads or "all",
        }
    )
    record_property(f"{kind}_tokens_per_s", f"{tps:.1f}")
    quantgate.check(
        pair,
        "throughput",
        {f"{kind}_tps_ratio": tps / baseline_tps},
        record_property,
        baselines={f"{kind}_tps_ratio": baseline_tps},
        extra={f"{kind}_tps_ratio": {"tokens_per_s": tps}},
    )


@pytest.mark.quality_gate("footprint")
def test_footprint(pair, quantgate, record_property):
    variant = quantgate.artifacts.variant(pair)
    baseline = quantgate.artifacts.baseline(pair.model_key)
    settings = quantgate.settings(pair.model_key)
    record_property("file_size_bytes", variant.info.file_size)
    record_property("bits_per_weight", f"{variant.info.bits_per_weight:.3f}")
    record_property("baseline_bits_per_weight", f"{baseline.info.bits_per_weight:.3f}")
    quantgate.check(
        pair,
        "footprint",
        {
            "size_ratio": variant.info.file_size / baseline.info.file_size,
            "peak_rss_mib": peak_rss_mib(variant, settings),
        },
        record_property,
        baselines={"size_ratio": 1.0, "peak_rss_mib": quantgate.baseline_rss_mib(pair.model_key)},
        extra={
            "size_ratio": {
                "file_size_bytes": variant.info.file_size,
                "bits_per_weight": variant.info.bits_per_weight,
                "baseline_file_size_bytes": baseline.info.file_size,
                "baseline_bits_per_weight": baseline.info.bits_per_weight,
                "n_blocks": variant.info.n_layers,
                "pruned_blocks": variant.notes.get("pruned_blocks"),
            }
        },
    )
