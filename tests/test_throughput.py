"""Throughput (llama-bench protocol: pp = one prompt of n_prompt tokens, tg = n_gen single-token
decodes; n_gen may list several lengths, Study A's TPS: their tokens/s averaged) and footprint
gates. Speed is gated as a ratio to the baseline, whose rounds alternate
with the variant's in the same process, so both see the same machine load.

    pytest tests/test_throughput.py -m smoke --benchmark-columns=mean,rounds
"""

import pytest


@pytest.mark.quality_gate("throughput")
@pytest.mark.parametrize("kind", ["pp", "tg"])
def test_throughput(pair, kind, quantgate, benchmark, record_property):
    rates = quantgate.tokens_per_second(pair, kind, benchmark)
    baseline_tps, tps = rates.baseline, rates.variant
    benchmark.extra_info.update(
        {
            "model": pair.model_key,
            "compression": pair.compression_name,
            "kind": kind,
            "n_tokens": rates.n_tokens,
            "tokens_per_s": tps,
            "baseline_tokens_per_s": baseline_tps,
            "threads": quantgate.variant_backend(pair).settings.n_threads or "all",
        }
    )
    record_property(f"{kind}_tokens_per_s", f"{tps:.1f}")
    quantgate.check(
        pair,
        "throughput",
        {f"{kind}_tps_ratio": tps / baseline_tps},
        record_property,
        baselines={f"{kind}_tps_ratio": baseline_tps},
        extra={
            f"{kind}_tps_ratio": {
                "tokens_per_s": tps,
                # tg at several lengths (Study A's TPS is their mean): each length's own rate
                "tokens_per_s_by_length": rates.variant_by_length,
            }
        },
        responsible=[f"{kind}_tps_ratio"],
    )


@pytest.mark.quality_gate("footprint")
def test_footprint(pair, quantgate, record_property):
    facts = quantgate.footprint(pair)
    record_property("file_size_bytes", facts["file_size_bytes"])
    record_property("size_measured_as", facts["size_measured_as"])
    record_property("load_seconds", f"{facts['load_seconds']:.2f}")
    record_property("bits_per_weight", f"{facts['bits_per_weight']:.3f}")
    record_property("baseline_bits_per_weight", f"{facts['baseline_bits_per_weight']:.3f}")
    measured = {
        "size_ratio": facts["file_size_bytes"] / facts["baseline_file_size_bytes"],
        "peak_rss_mib": facts["peak_rss_mib"],
    }
    baselines = {"size_ratio": 1.0, "peak_rss_mib": facts["baseline_peak_rss_mib"]}
    if facts["peak_vram_mib"] is not None:  # a pair on a GPU
        measured["peak_vram_mib"] = facts["peak_vram_mib"]
        baselines["peak_vram_mib"] = facts["baseline_peak_vram_mib"]
    if facts["sparsity"] is not None:  # a backend that reads its weights (transformers)
        measured |= facts["sparsity"]
    quantgate.check(
        pair,
        "footprint",
        measured,
        record_property,
        baselines=baselines,
        extra={"size_ratio": facts},
        responsible=[
            "size_ratio",
            "peak_rss_mib",
            "peak_vram_mib",
            "weight_sparsity_pct",
            "weight_2of4_pct",
        ],
        # a GPU entry run where no GPU answers: reported, never a pass
        not_measured_here={"peak_vram_mib": "no GPU memory was measured in this process"},
    )
