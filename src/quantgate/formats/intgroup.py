"""Asymmetric integer group quantization, as AWQ and GPTQ checkpoints store weights.

Per group of ``group_size`` weights (128 by default; 32/64 for small hidden sizes), with the
range widened to include 0 as GPTQ's ``Quantizer.find_params`` does (``sym=False``):
    lo = min(min w, 0), hi = max(max w, 0)   (hi = lo = 0 becomes −1, +1)
    s = (hi − lo) / (2^b − 1),  z = round(−lo / s)  (in [0, 2^b − 1] because lo ≤ 0 ≤ hi),
    q = clamp(round(w / s) + z, 0, 2^b − 1),  ŵ = s · (q − z).
GPTQ then reorders columns and corrects the rounding error; the storage format and this
dequantization are the same, and AWQ checkpoints store the same (q, s, z). Scales are kept in
float16 as both store them; rounding is half-to-even (torch.round). Without widening the range
to 0 (AutoAWQ's RTN clamps z instead), a group lying entirely above 0 would clamp every code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantgate.formats.base import QuantizationError, to_fp16


@dataclass(frozen=True)
class IntGroups:
    bits: int
    group_size: int
    q: np.ndarray  # [n_groups, group_size] codes in [0, 2^b − 1]
    scale: np.ndarray  # [n_groups] float16
    zero: np.ndarray  # [n_groups] int codes in [0, 2^b − 1]

    def dequantize(self) -> np.ndarray:
        s = self.scale.astype(np.float32)[:, None]
        return (s * (self.q - self.zero[:, None]).astype(np.float32)).reshape(-1)


def quantize(w: np.ndarray, bits: int = 4, group_size: int = 128) -> IntGroups:
    if bits not in (2, 3, 4, 8):
        raise QuantizationError(f"int group quantization: bits must be 2, 3, 4 or 8, got {bits}")
    w = np.asarray(w, dtype=np.float32)
    if w.size % group_size:
        raise QuantizationError(
            f"int{bits}: {w.size} weights are not a multiple of group size {group_size}"
        )
    if not np.isfinite(w).all():
        raise QuantizationError(f"int{bits}: NaN/inf weights cannot be quantized")
    g = w.reshape(-1, group_size)
    qmax = 2**bits - 1
    lo, hi = np.minimum(g.min(axis=1), 0), np.maximum(g.max(axis=1), 0)
    empty = (lo == 0) & (hi == 0)
    lo, hi = np.where(empty, -1.0, lo), np.where(empty, 1.0, hi)
    scale = to_fp16((hi - lo) / qmax, f"int{bits}", "scale")
    if (scale == 0).any():
        raise QuantizationError(
            f"int{bits}: a group's range {float((hi - lo).min()):g} is "
            "below fp16's smallest scale; rescale the tensor"
        )
    s = scale.astype(np.float32)
    zero = np.clip(np.round(-lo / s), 0, qmax).astype(np.int32)
    q = np.clip(np.round(g / s[:, None]) + zero[:, None], 0, qmax).astype(np.int32)
    return IntGroups(bits, group_size, q, scale, zero)


def pack_int4(q: np.ndarray) -> np.ndarray:
    """Two 4-bit codes per byte, element 2i in the low nibble (the order of GPTQ's and
    compressed-tensors' ``pack_to_int32`` once its int32 words are viewed as bytes)."""
    q = np.asarray(q, dtype=np.uint8).reshape(-1, 2)
    return (q[:, 0] | (q[:, 1] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    packed = np.asarray(packed, dtype=np.uint8)
    return np.stack([packed & 0xF, packed >> 4], axis=1).reshape(-1).astype(np.int32)
