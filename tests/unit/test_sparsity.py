"""Sparsity as a compression family: llm-compressor's SparseGPT and Wanda in the quantizer
environment, alone and followed by LLM.int8, and the footprint gate that reads the zeros from
the loaded weights (quantgate.sparsity)."""

from __future__ import annotations

import numpy as np
import pytest

from quantgate.sparsity import sparsity_of

SPARSE_GATES = ("tests/test_perplexity.py", "tests/test_throughput.py::test_footprint")


def test_dense_weights_have_no_zeros_and_no_2of4_groups():
    w = np.arange(1, 33, dtype=np.float32).reshape(4, 8)
    assert sparsity_of([w]) == {"weight_sparsity_pct": 0.0, "weight_2of4_pct": 0.0}


def test_a_2of4_mask_is_seen_in_every_group():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 16)).astype(np.float32) + 10.0
    groups = w.reshape(-1, 4)
    for row in groups:  # zero the two smallest of each group of four, as a 2:4 pruner does
        row[np.argsort(np.abs(row))[:2]] = 0.0
    assert sparsity_of([w]) == {"weight_sparsity_pct": 50.0, "weight_2of4_pct": 100.0}


def test_unstructured_zeros_count_by_weight_over_all_matrices():
    a = np.ones((2, 8), np.float32)
    a[0, :4] = 0.0  # 4 zeros, all in one group: that group is 2:4 (0 non-zeros), the others not
    b = np.ones((3, 5), np.float32)  # 15 weights, width 5: counted in zeros, not in groups
    b[1, 1] = 0.0
    got = sparsity_of([a, b])
    assert got is not None
    assert got["weight_sparsity_pct"] == pytest.approx(100 * 5 / 31)
    assert got["weight_2of4_pct"] == pytest.approx(100 * 1 / 4)


def test_no_matrix_measures_nothing():
    assert sparsity_of([]) is None


def test_it_counts_torch_tensors_the_same_way():
    torch = pytest.importorskip("torch")
    w = np.array([[0, 1, 0, 2, 3, 4, 5, 6]], np.float32)
    assert sparsity_of([torch.from_numpy(w)]) == sparsity_of([w])


@pytest.mark.real_model
def test_sparse_variants_pass_and_the_2of4_canary_fails(gate_run):
    """On SmolLM2 (transformers, CPU): SparseGPT at 20 % unstructured passes perplexity, KLD and
    footprint, alone and followed by LLM.int8 (Study B's int8 + pruning row, a chain across
    methods); Wanda at 2:4 is caught by perplexity and KLD while its footprint shows the
    pattern it asked for."""
    run = gate_run(*SPARSE_GATES, "-m", "sparse", "--model", "smollm2_hf")
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
