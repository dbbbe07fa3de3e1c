"""Sparsity as a compression family on the real SmolLM2: llm-compressor's SparseGPT and Wanda
in the quantizer environment, alone and followed by LLM.int8, gated by the footprint gate."""

from __future__ import annotations

import pytest

from support.helpers import hf_family_chunks

SPARSE_GATES = ("tests/test_perplexity.py", "tests/test_throughput.py::test_footprint")


@pytest.mark.real_model
def test_sparse_variants_pass_and_the_2of4_canary_fails(gate_run, registry_copy):
    """On SmolLM2 (transformers, CPU): SparseGPT at 20 % unstructured passes perplexity, KLD and
    footprint, alone and followed by LLM.int8 (Study B's int8 + pruning row, a chain across
    methods); Wanda at 2:4 is caught by perplexity and KLD while its footprint shows the
    pattern it asked for. Perplexity on 6 chunks (support/helpers.py: hf_family_chunks)."""
    registry = registry_copy(hf_family_chunks)
    run = gate_run(*SPARSE_GATES, "-m", "sparse", "--model", "smollm2_hf", f"--registry={registry}")
    assert run.returncode == 0, run.output[-3000:]
    outcomes = run.outcomes()
    for good in ("llmc-sparsegpt-20", "llmc-sparsegpt-20-bnb-int8"):
        for test in ("perplexity", "kl_divergence", "footprint"):
            assert outcomes[f"test_{test}[smollm2_hf-{good}]"] == "passed", outcomes
    canary = "smollm2_hf-llmc-wanda-2of4"
    assert outcomes[f"test_perplexity[{canary}]"] == "xfailed"
    assert outcomes[f"test_kl_divergence[{canary}]"] == "xfailed"
    assert outcomes[f"test_footprint[{canary}]"] == "passed"
    rows = run.summary()
    for good in ("llmc-sparsegpt-20", "llmc-sparsegpt-20-bnb-int8"):
        assert 19.9 < rows[f"smollm2_hf-{good}", "weight_sparsity_pct"]["value"] < 21
    # int8 over the pruned checkpoint: the zeros survive, the bytes halve and more
    chain = rows["smollm2_hf-llmc-sparsegpt-20-bnb-int8", "size_ratio"]
    assert chain["size_measured_as"] == "loaded weights" and chain["value"] < 0.5
    assert rows[canary, "weight_2of4_pct"]["value"] == 100.0
    assert rows[canary, "ppl_increase_pct"]["value"] > 100


@pytest.mark.real_model
def test_a_chain_that_lost_its_pruning_fails_the_sparsity_bound(gate_run, registry_copy):
    """The footprint gate failing: the int8 + pruning chain built on the dense baseline (its
    ``base:`` dropped) keeps every quality gate green, and its zeros are LLM.int8's rounding
    alone, far under the 19.5 % its thresholds ask of it."""

    def no_pruning(doc):
        del doc["models"]["smollm2_hf"]["compressions"]["llmc-sparsegpt-20-bnb-int8"]["base"]

    run = gate_run(
        "tests/test_throughput.py::test_footprint",
        f"--registry={registry_copy(no_pruning)}",
        "--model",
        "smollm2_hf",
        "--compression",
        "llmc-sparsegpt-20-bnb-int8",
    )
    assert run.returncode == 1, run.output[-3000:]
    assert run.outcomes() == {"test_footprint[smollm2_hf-llmc-sparsegpt-20-bnb-int8]": "failed"}
    row = run.summary()["smollm2_hf-llmc-sparsegpt-20-bnb-int8", "weight_sparsity_pct"]
    assert row["verdict"] == "FAIL" and row["value"] < 5, row
    assert "weight_sparsity_pct" in run.output and "19.5" in run.output
