"""Benchmark retention gate: D_i = (1 - B_compressed / B_baseline) * 100 per benchmark, through
lm-eval, baseline and compressed model on the same items; D_overall is their mean. Each D comes
with a paired bootstrap 95 % CI, and correct/wrong benchmarks with flips and McNemar's test;
the threshold's mode (point, ci, strict) says which number is compared with it.

    pytest tests/test_retention.py -m smoke
    pytest tests/test_retention.py -m gguf --model llama31 --baseline pinned
"""

import pytest

from quantgate.stats import overall_interval


@pytest.mark.quality_gate("retention")
def test_retention(pair, bench, quantgate, record_property):
    comparison = quantgate.retention(pair, bench)
    result = comparison.compressed
    record_property(f"{bench}.{result.metric}", f"{result.score:.4f}")
    record_property(f"{bench}.items", result.n_items)
    d_name, flips_name = f"D_{bench}", f"flips_{bench}"
    measured = {d_name: comparison.d}
    interval, resolution = comparison.interval(), comparison.resolution()
    row = {"score": result.score, "n_items": result.n_items}
    flips = comparison.flips()
    if flips is not None:
        measured[flips_name] = flips.flips_pct
        row |= {
            "correct_to_wrong": flips.correct_to_wrong,
            "wrong_to_correct": flips.wrong_to_correct,
            "mcnemar_p": flips.mcnemar_p,
        }
        record_property(f"{bench}.mcnemar_p", f"{flips.mcnemar_p:.4g}")
    quantgate.check(
        pair,
        "retention",
        measured,
        record_property,
        baselines={d_name: comparison.baseline_score},
        intervals={d_name: interval} if interval else None,
        resolution={d_name: resolution} if resolution is not None else None,
        extra={d_name: row},
    )


@pytest.mark.quality_gate("retention")
def test_retention_overall(pair, quantgate, record_property):
    if not pair.model.benchmarks:
        pytest.skip(f"models.{pair.model_key} declares no benchmarks")
    comparisons = [quantgate.retention(pair, bench) for bench in pair.model.benchmarks]
    d = sum(c.d for c in comparisons) / len(comparisons)
    paired = [c.paired_scores() for c in comparisons]
    interval = overall_interval(paired) if all(paired) else None  # type: ignore[arg-type]
    quantgate.check(
        pair,
        "retention",
        {"D_overall": d},
        record_property,
        intervals={"D_overall": interval} if interval else None,
    )
