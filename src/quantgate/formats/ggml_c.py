"""ggml's own C (de)quantizers, as shipped inside llama-cpp-python (libggml-base.so), via ctypes.

These are the reference functions llama.cpp uses to write model files
(``quantize_row_<type>_ref``) and to read them (``dequantize_row_<type>``).
"""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path

import numpy as np

TYPE_SIZES = {
    "Q4_0": (32, 18),
    "Q4_1": (32, 20),
    "Q5_0": (32, 22),
    "Q5_1": (32, 24),
    "Q8_0": (32, 34),
    "Q2_K": (256, 84),
    "Q3_K": (256, 110),
    "Q4_K": (256, 144),
    "Q5_K": (256, 176),
    "Q6_K": (256, 210),
}


@cache
def _lib() -> ctypes.CDLL:
    import llama_cpp

    path = Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"
    return ctypes.CDLL(str(path))


def _fn(name: str):  # -> ctypes function
    fn = getattr(_lib(), name)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    return fn


def _c_name(type_name: str) -> str:
    """ggml's spelling: q4_0, q4_K (the K stays upper case)."""
    return type_name[0].lower() + type_name[1:]


def quantize(type_name: str, x: np.ndarray) -> np.ndarray:
    block, size = TYPE_SIZES[type_name]
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.zeros((x.size // block, size), dtype=np.uint8)
    _fn(f"quantize_row_{_c_name(type_name)}_ref")(x.ctypes.data, out.ctypes.data, x.size)
    return out


def dequantize(type_name: str, packed: np.ndarray) -> np.ndarray:
    block, size = TYPE_SIZES[type_name]
    packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1, size)
    out = np.zeros(len(packed) * block, dtype=np.float32)
    _fn(f"dequantize_row_{_c_name(type_name)}")(packed.ctypes.data, out.ctypes.data, out.size)
    return out
