"""Counting zeros and 2:4 groups in loaded weights (quantgate.evaluation.sparsity), numpy and torch
alike."""

from __future__ import annotations

import numpy as np
import pytest

from quantgate.evaluation.sparsity import sparsity_of


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


def test_a_packed_layer_is_left_out_before_and_after_it_is_decompressed():
    """compressed-tensors decompresses a packed int4 layer on the model's first forward: a float
    ``weight`` appears beside ``weight_shape``. The count must not depend on whether a gate ran
    the model first (transformers' weight_sparsity reads the loaded model)."""
    import torch

    from quantgate.backends.transformers import TransformersBackend

    dense, packed = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    with torch.no_grad():
        dense.weight.fill_(1.0)
        packed.weight.zero_()  # decompressed int4 rounding: zeros that are not pruning
    packed.register_buffer("weight_shape", torch.tensor([4, 8]))
    model = torch.nn.Sequential(dense, packed, torch.nn.Linear(8, 2))
    model.get_output_embeddings = lambda: model[2]
    backend = object.__new__(TransformersBackend)
    backend.__dict__.update(model=model, _torch=torch)
    assert backend.weight_sparsity() == {"weight_sparsity_pct": 0.0, "weight_2of4_pct": 0.0}
    del packed.weight_shape
    assert backend.weight_sparsity()["weight_sparsity_pct"] == 50.0
