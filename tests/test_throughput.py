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
    quantgate.check(pair, quantgate.measure_throughput(pair, kind, benchmark), record_property)


@pytest.mark.quality_gate("footprint")
def test_footprint(pair, quantgate, record_property):
    quantgate.check(pair, quantgate.measure_footprint(pair), record_property)
