"""Numpy reference implementations of the quantization formats compressed models rest on.

One class per format on a shared base (quantgate.formats.base), in the style of gguf-py's
``quants.py``; the property tests in tests/unit/quant_formulas check them with hypothesis and
against gguf-py and ggml's C code.
"""

from quantgate.formats import ggml_k, ggml_legacy  # noqa: F401  (registers the block formats)
from quantgate.formats.base import FORMATS, BlockFormat, QuantizationError, get_format

__all__ = ["FORMATS", "BlockFormat", "QuantizationError", "get_format"]
