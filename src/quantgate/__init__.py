"""quantgate: a pytest regression gate for compressed (quantized and pruned) LLMs."""

__version__ = "0.1.0"
