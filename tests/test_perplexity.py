"""Perplexity and KL-divergence gates: WikiText-2 raw test, the llama-perplexity protocol.
PPL increase and mean KLD carry 95 % bootstrap intervals over chunks (for modes ci/strict).

pytest tests/test_perplexity.py -m smoke
pytest tests/test_perplexity.py -m gguf --model llama31 --compression Q4_K_M
"""

import pytest

KLD_METRICS = ("kld_mean", "kld_p99", "top1_agreement_pct")


@pytest.mark.quality_gate("perplexity")
def test_perplexity(pair, quantgate, record_property):
    result = quantgate.quality(pair)
    m = result.metrics
    quantgate.check(
        pair,
        "perplexity",
        {"ppl_increase_pct": m["ppl_increase_pct"], "ln_ppl_ratio": m["ln_ppl_ratio"]},
        record_property,
        intervals=result.intervals,
        extra={"ppl_increase_pct": {"ppl": result.ppl, "ppl_baseline": result.ppl_baseline}},
        responsible=["ppl_increase_pct", "ln_ppl_ratio"],
    )
    record_property("ppl", f"{result.ppl:.6g}")
    record_property("ppl_baseline", f"{result.ppl_baseline:.6g}")


@pytest.mark.quality_gate("kld")
def test_kl_divergence(pair, quantgate, record_property):
    result = quantgate.quality(pair)
    m = result.metrics
    quantgate.check(
        pair,
        "kld",
        {k: m[k] for k in KLD_METRICS},
        record_property,
        intervals=result.intervals,
        responsible=KLD_METRICS,
    )
