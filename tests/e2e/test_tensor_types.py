"""A mixed-precision recipe as a registry entry, on the real SmolLM2
(quantgate.artifacts.tensor_types): llama.cpp's quantizer, in process as the gate calls it, changes
exactly the tensors the entry names, read back from the GGUF; the recipe enters the artifact's key;
a pattern that names no tensor is one line."""

from __future__ import annotations

import pytest
from gguf import GGUFReader

from quantgate.artifacts.store import ArtifactStore
from quantgate.configuration.registry import load_registry
from quantgate.errors import ConfigError

pytestmark = pytest.mark.real_model

#: two blocks' FFN down-projections at Q8_0 and the token embedding at Q4_0 (the base types
#: make it Q8_0 on this model): three tensors, each another type than the base type gives it
OVERRIDES = {"tensor_types": {r"blk\.(0|1)\.ffn_down": "q8_0"}, "token_embedding_type": "Q4_0"}
NAMED = {
    "blk.0.ffn_down.weight": "Q8_0",
    "blk.1.ffn_down.weight": "Q8_0",
    "token_embd.weight": "Q4_0",
}


def _types(path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}


def _store(registry_copy, base: str, **overrides):
    def add(doc):
        doc["models"]["smollm2"]["compressions"]["mixed"] = {
            "method": "llama_quantize", "quant_type": base, **overrides,
        }  # fmt: skip
        doc["models"]["smollm2"]["compressions"]["plain"] = {
            "method": "llama_quantize", "quant_type": base,
        }  # fmt: skip

    registry = load_registry(registry_copy(add))
    pairs = {p.compression_name: p for p in registry.pairs(["smollm2"])}
    return ArtifactStore(registry), pairs


@pytest.mark.parametrize("base", ["Q5_0", "Q4_K_M"])
def test_the_overrides_give_the_tensors_they_name_their_types(registry_copy, base):
    store, pairs = _store(registry_copy, base, **OVERRIDES)
    plain, mixed = store.variant(pairs["plain"]), store.variant(pairs["mixed"])
    assert mixed.path != plain.path  # the recipe is part of the key
    before, after = _types(plain.path), _types(mixed.path)
    assert before.keys() == after.keys()
    changed = {name for name in before if before[name] != after[name]}
    assert {name: after[name] for name in NAMED} == NAMED
    assert all(before[name] != type_ for name, type_ in NAMED.items())
    if base == "Q5_0":  # no layer-position rule without an imatrix: exactly the named change
        assert changed == set(NAMED)
    else:
        # a _M mixture gives "more bits" to some layers' ffn_down by counting the ffn_down
        # tensors it types itself; overridden ones are not counted, so the layers after them
        # shift (llama.cpp 0.3.36; docs/selecting-and-adding.md "Mixed-precision recipes"):
        # only ffn_down moves
        shifted = changed - set(NAMED)
        assert shifted and all(name.endswith(".ffn_down.weight") for name in shifted), shifted
    # the report's row says what was asked
    assert mixed.notes["tensor_types"] == {r"blk\.(0|1)\.ffn_down": "q8_0"}
    assert mixed.notes["token_embedding_type"] == "q4_0"


def test_a_pattern_that_names_no_tensor_is_one_line(registry_copy):
    store, pairs = _store(registry_copy, "Q5_0", tensor_types={"ffn_dwn": "q8_0"})
    with pytest.raises(ConfigError) as caught:
        store.variant(pairs["mixed"])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        "models.smollm2.compressions.mixed.tensor_types: 'ffn_dwn' matches no tensor of "
        "smollm2-baseline"
    ), message
    assert "did you mean" in message and "ffn_down" in message
