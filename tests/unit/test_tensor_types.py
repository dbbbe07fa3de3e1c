"""Mixed-precision recipes (quantgate.artifacts.tensor_types): the registry's checks of the
per-tensor types, what enters the cache key, and llama-quantize's options for the same recipe. The
real quantizer on the real model: tests/e2e/test_tensor_types.py."""

from __future__ import annotations

import pytest

from quantgate.artifacts.tensor_types import TensorTypes, ggml_type_id, ggml_type_name
from quantgate.errors import ConfigError

LLAMA_QUANTIZE = {"method": "llama_quantize", "quant_type": "Q4_K_M"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tensor_types": {"ffn_down": "q9_0"}}, r"unknown ggml type 'q9_0' \(known: f32, f16, "),
        ({"output_tensor_type": "Q4_K_M"}, "unknown ggml type 'Q4_K_M'"),
        ({"tensor_types": {"blk.(0": "q8_0"}}, r"'blk.\(0' is not a regular expression"),
        ({"tensor_types": {"attn": "iq2_xxs"}}, "iq2_xxs needs an importance matrix"),
        ({"tensor_types": {"attn": "IQ3_XXS"}}, "iq3_xxs needs an importance matrix"),
        ({"tensor_type": {"attn": "q8_0"}}, "unknown key 'tensor_type'"),
        # llama.cpp would ignore them without a word
        (
            {"quant_type": "F16", "tensor_types": {"ffn_down": "q8_0"}},
            "tensor_types on quant_type F16: llama.cpp applies them only with a quantized",
        ),
    ],
)
def test_bad_overrides_are_one_line_errors_naming_the_entry(registry_copy, overrides, message):
    from quantgate.configuration.registry import load_registry

    def edit(doc):
        doc["models"]["smollm2"]["compressions"]["bad"] = {**LLAMA_QUANTIZE, **overrides}

    with pytest.raises(ConfigError, match=message) as exc:
        load_registry(registry_copy(edit))
    assert "\n" not in str(exc.value)
    assert "bad" in str(exc.value)


def test_types_are_read_in_any_case_and_written_as_llama_quantize_reads_them(registry_copy):
    from quantgate.configuration.registry import load_registry

    def edit(doc):
        doc["models"]["smollm2"]["compressions"]["mixed"] = {
            **LLAMA_QUANTIZE,
            "tensor_types": {r"blk\.0\.": "Q8_0", "attn_v": "q6_K"},
            "output_tensor_type": "F16",
        }

    registry = load_registry(registry_copy(edit))
    (pair,) = (p for p in registry.pairs(["smollm2"]) if p.compression_name == "mixed")
    overrides = pair.compression.overrides
    assert overrides.patterns == ((r"blk\.0\.", "q8_0"), ("attn_v", "q6_k"))  # in order
    assert overrides.tool_args() == [
        "--tensor-type", r"blk\.0\.=q8_0", "--tensor-type", "attn_v=q6_k",
        "--output-tensor-type", "f16",
    ]  # fmt: skip
    assert ggml_type_name(ggml_type_id("q6_K")) == "q6_k"


def test_a_recipe_enters_the_key_and_no_recipe_leaves_the_key_as_it_was():
    assert TensorTypes().key() == {} and not TensorTypes()
    recipe = TensorTypes((("ffn_down", "q8_0"),), token_embedding="q4_0")
    other = TensorTypes((("ffn_down", "q6_k"),), token_embedding="q4_0")
    assert recipe.key() and recipe.key() != other.key()
    assert recipe.note() == {"tensor_types": {"ffn_down": "q8_0"}, "token_embedding_type": "q4_0"}
