"""Benchmark retention gate: D_i = (1 - B_compressed / B_baseline) * 100 per benchmark, through
lm-eval, baseline and compressed model on the same items; D_overall is their mean.

    pytest tests/test_retention.py -m smoke
    pytest tests/test_retention.py -m gguf --model llama31 --baseline pinned
"""

import pytest

from quantgate.retention import retention_pct


@pytest.mark.quality_gate("retention")
def test_retention(pair, bench, quantgate, record_property):
    baseline, result = quantgate.retention(pair, bench)
    record_property(f"{bench}.{result.metric}", f"{result.score:.4f}")
    record_property(f"{bench}.items", result.n_items)
    d = retention_pct(result.score, baseline, f"{pair.id} {bench}")
    quantgate.check(
        pair, "retention", {f"D_{bench}": d}, record_property, baselines={f"D_{bench}": baseline}
    )


@pytest.mark.quality_gate("retention")
def test_retention_overall(pair, quantgate, record_property):
    if not pair.model.benchmarks:
        pytest.skip(f"models.{pair.model_key} declares no benchmarks")
    ds = []
    for bench in pair.model.benchmarks:
        baseline, result = quantgate.retention(pair, bench)
        ds.append(retention_pct(result.score, baseline, f"{pair.id} {bench}"))
    quantgate.check(pair, "retention", {"D_overall": sum(ds) / len(ds)}, record_property)
