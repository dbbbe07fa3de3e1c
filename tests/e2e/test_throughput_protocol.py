"""The throughput gate on the real model records each generation length's rate."""

from __future__ import annotations

import pytest


@pytest.mark.real_model
def test_the_gate_records_each_lengths_rate_on_the_real_model(gate_run, registry_copy):
    """Through pytest-benchmark, on SmolLM2: tg at two lengths, their mean gated as the ratio,
    each length's rate in the summary row."""

    def two_lengths(doc):
        doc["evaluation"]["throughput"] |= {"n_gen": [16, 32], "rounds": 2}

    run = gate_run(
        "tests/test_throughput.py::test_throughput",
        f"--registry={registry_copy(two_lengths)}",
        "--model",
        "smollm2",
        "--compression",
        "Q8_0",
        "-k",
        "tg",
    )
    assert run.returncode == 0, run.output[-3000:]
    row = run.summary()["smollm2-Q8_0", "tg_tps_ratio"]
    by_length = row["tokens_per_s_by_length"]
    assert set(by_length) == {"16", "32"}
    assert row["tokens_per_s"] == pytest.approx(sum(by_length.values()) / 2)
