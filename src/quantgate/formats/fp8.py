"""FP8 E4M3 ("e4m3fn": 4 exponent bits, bias 7, 3 mantissa bits, no infinities, one NaN code)
as torch.float8_e4m3fn and vLLM/llm-compressor's FP8 checkpoints use it.

Scaled quantization: s = amax / 448, ŵ = s · fp8(clamp(w / s, −448, 448)). The clamp is what
quantizers do before the cast (a bare cast of a value above 464 gives NaN, not 448).
Casting rounds to nearest, ties to even; the smallest subnormal is 2^−9.
"""

from __future__ import annotations

import numpy as np

from quantgate.formats.base import QuantizationError

FP8_MAX = 448.0
MIN_SUBNORMAL = 2.0**-9
MANTISSA_BITS = 3
MIN_NORMAL_EXP = -6


def cast(x: np.ndarray) -> np.ndarray:
    """float32 -> the nearest E4M3 value (as float32), ties to even, saturating at ±448."""
    x = np.clip(np.asarray(x, dtype=np.float64), -FP8_MAX, FP8_MAX)
    mag = np.abs(x)
    # spacing of representable values around each x: 2^(e − 3) in the normal range,
    # 2^−9 below 2^−6 (subnormals)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(mag > 0, mag, 1.0)))
    e = np.maximum(e, MIN_NORMAL_EXP)
    ulp = np.exp2(e - MANTISSA_BITS)
    return np.copysign(np.round(mag / ulp) * ulp, x).astype(np.float32)  # np.round: half-even


def encode(x: np.ndarray) -> np.ndarray:
    """The byte of each E4M3 value from :func:`cast`: sign, 4-bit exponent, 3-bit mantissa."""
    v = np.asarray(x, dtype=np.float64)
    sign = (np.signbit(v)).astype(np.uint8) << 7
    mag = np.abs(v)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(mag > 0, mag, 1.0)))
    normal = mag >= 2.0**MIN_NORMAL_EXP
    exp_field = np.where(normal, e + 7, 0).astype(np.int64)
    mant = np.where(normal, mag / np.exp2(e) - 1.0, mag / MIN_SUBNORMAL / 8.0) * 8
    return (sign | (exp_field << 3).astype(np.uint8) | np.round(mant).astype(np.uint8)).astype(
        np.uint8
    )


def decode(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.uint8).astype(np.int64)
    sign = np.where(b & 0x80, -1.0, 1.0)
    exp_field, mant = (b >> 3) & 0xF, b & 0x7
    value = np.where(
        exp_field == 0, mant / 8.0 * 2.0**MIN_NORMAL_EXP, (1 + mant / 8.0) * np.exp2(exp_field - 7)
    )
    value = np.where((exp_field == 0xF) & (mant == 0x7), np.nan, value)  # S.1111.111 is NaN
    return (sign * value).astype(np.float32)


def quantize(w: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-tensor scaled FP8: codes (uint8) and the float32 scale.

    Raises:
        QuantizationError: NaN/inf, or a tensor so small (amax < 448·2^−126 ≈ 5.3e−36) that its
            scale is not a normal float32 (it would underflow and divide by zero).
    """
    w = np.asarray(w, dtype=np.float32)
    if not np.isfinite(w).all():
        raise QuantizationError("FP8: NaN/inf weights cannot be quantized")
    amax = float(np.abs(w).max()) if w.size else 0.0
    if amax == 0:
        return encode(np.zeros_like(w)), 1.0
    scale = np.float32(amax / FP8_MAX)
    if scale < np.finfo(np.float32).tiny:
        raise QuantizationError(
            f"FP8: amax {amax:g} gives a scale below float32's normal range; the tensor is "
            "numerically zero: store it as zeros"
        )
    return encode(cast(w / scale)), float(scale)


def dequantize(codes: np.ndarray, scale: float) -> np.ndarray:
    return (decode(codes) * np.float32(scale)).astype(np.float32)
