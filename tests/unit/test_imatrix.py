"""Importance-matrix quantization: the registry's checks of imatrix entries."""

from __future__ import annotations

import pytest

from quantgate.errors import ConfigError


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"method": "llama_quantize", "quant_type": "IQ2_XXS"},
            "IQ2_XXS needs an importance matrix: add an imatrix: block",
        ),
        (
            {"method": "prune_blocks", "n_blocks": 2, "calibration": "c.txt",
             "imatrix": {"calibration": "c.txt"}},
            "compressions.bad: unknown key 'imatrix'",
        ),
        (
            {"method": "llama_quantize", "quant_type": "IQ2_XXS",
             "imatrix": {"calibration": "c.txt", "chunk": 4}},
            "chunk",
        ),
    ],
)  # fmt: skip
def test_bad_imatrix_entries_are_one_line_errors(registry_copy, entry, message):
    from quantgate.configuration.registry import load_registry

    def edit(doc):
        doc["models"]["smollm2"]["compressions"]["bad"] = entry

    with pytest.raises(ConfigError, match=message) as exc:
        load_registry(registry_copy(edit))
    assert "\n" not in str(exc.value)
    assert "bad" in str(exc.value)  # the entry is named
