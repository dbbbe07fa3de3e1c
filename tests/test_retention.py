"""Benchmark retention gate: D_i = (1 - B_compressed / B_baseline) * 100 per benchmark, through
lm-eval, baseline and compressed model on the same items; D_overall is their mean. Each D comes
with a paired bootstrap 95 % CI; correct/wrong benchmarks add flips (with the flip rate's exact
interval) and multiple-choice ones the graded per-item signals Dgold_ (gold-choice probability
lost) and choice_kld_ (answer-distribution KLD). The threshold's mode (point, ci, strict) says
which number is compared with it.

    pytest tests/test_retention.py -m smoke
    pytest tests/test_retention.py -m gguf --model llama31
"""

import pytest


@pytest.mark.quality_gate("retention")
def test_retention(pair, bench, quantgate, record_property):
    quantgate.check(pair, quantgate.measure_retention(pair, bench), record_property)


@pytest.mark.quality_gate("retention")
def test_retention_overall(pair, quantgate, record_property):
    if not pair.model.benchmarks:
        pytest.skip(f"models.{pair.model_key} declares no benchmarks")
    measured = quantgate.measure_retention_overall(pair)
    quantgate.check(pair, measured, record_property)  # an error if D_overall has a bound
    if not measured.values:  # undefined (a baseline scored 0) and set to null: not a pass
        pytest.skip(f"D_overall not judged: {measured.undefined['D_overall']}")
