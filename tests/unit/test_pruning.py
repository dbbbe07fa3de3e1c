"""Structured pruning: the block-influence math, the choice of blocks, and registry chains."""

from __future__ import annotations

import numpy as np
import pytest

from quantgate.artifacts.block_pruning import block_influence, choose_blocks
from quantgate.errors import ConfigError


def test_block_influence_is_one_minus_mean_cosine():
    h0 = np.array([[1.0, 0.0], [0.0, 1.0]])
    same = block_influence([h0, h0.copy()])
    turned = block_influence([h0, np.array([[0.0, 1.0], [0.0, 1.0]])])  # cos 0 and 1
    assert same == pytest.approx([0.0]) and turned == pytest.approx([0.5])


def test_choose_blocks_takes_the_least_influential_unprotected():
    scores = [0.9, 0.02, 0.5, 0.01, 0.03, 1.0]
    assert choose_blocks(scores, 2, protect=[0, 5]) == [1, 3]
    assert choose_blocks(scores, 1, protect=[3]) == [1]
    with pytest.raises(ConfigError, match="cannot drop 6 of 6 blocks"):
        choose_blocks(scores, 6)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"method": "llama_quantize", "quant_type": "Q4_K_M", "base": "prunedd"},
            "base: no compression 'prunedd'",
        ),
        ({"method": "prune_blocks", "n_blocks": 2}, r"compressions\.bad\.calibration: required"),
    ],
)
def test_bad_chains_and_pruning_entries_are_one_line_errors(registry_copy, entry, message):
    from quantgate.configuration.registry import load_registry

    def edit(doc):
        doc["models"]["smollm2"]["compressions"]["bad"] = entry

    with pytest.raises(ConfigError, match=message) as exc:
        load_registry(registry_copy(edit))
    assert "\n" not in str(exc.value)


def test_a_base_chain_that_loops_is_an_error(registry_copy):
    from quantgate.configuration.registry import load_registry

    def edit(doc):
        comps = doc["models"]["smollm2"]["compressions"]
        comps["a"] = {"method": "llama_quantize", "quant_type": "Q4_K_M", "base": "b"}
        comps["b"] = {"method": "llama_quantize", "quant_type": "Q8_0", "base": "a"}

    with pytest.raises(ConfigError, match="base chain loops: a -> b -> a"):
        load_registry(registry_copy(edit))
