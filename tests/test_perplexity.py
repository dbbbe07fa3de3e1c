"""Perplexity and KL-divergence gates: WikiText-2 raw test, the llama-perplexity protocol.
PPL increase and mean KLD carry 95 % bootstrap intervals over chunks (for modes ci/strict).

pytest tests/test_perplexity.py -m smoke
pytest tests/test_perplexity.py -m gguf --model llama31 --compression Q4_K_M
"""

import pytest


@pytest.mark.quality_gate("perplexity")
def test_perplexity(pair, quantgate, record_property):
    measured = quantgate.measure_perplexity(pair)
    quantgate.check(pair, measured, record_property)
    ppl = measured.extra["ppl_increase_pct"]
    record_property("ppl", f"{ppl['ppl']:.6g}")
    record_property("ppl_baseline", f"{ppl['ppl_baseline']:.6g}")


@pytest.mark.quality_gate("kld")
def test_kl_divergence(pair, quantgate, record_property):
    quantgate.check(pair, quantgate.measure_kld(pair), record_property)
