"""GGUF legacy blocks of 32 weights (ggml-quants.c ``quantize_row_*_ref`` / ``dequantize_row_*``).

type-0 (w = d·q): Q4_0, Q5_0, Q8_0 — a signed scale ``d`` from the element of largest magnitude.
type-1 (w = d·q + m): Q4_1, Q5_1 — scale and minimum, codes from 0.

Arithmetic follows the C line by line in float32 (same operation order), so the bytes match.
"""

from __future__ import annotations

import numpy as np

from quantgate.formats.base import (
    BlockFormat,
    bytes_fp16,
    c_roundf,
    c_trunc_int8,
    fp16_bytes,
    to_fp16,
)

QK = 32
F32 = np.float32


def _signed_absmax(blocks: np.ndarray) -> np.ndarray:
    """The value of largest magnitude, first one on ties (C: ``if (amax < fabsf(v))``, starting
    from ``max = 0.0f``: an all-zero block gives +0.0 even when its zeros are −0.0)."""
    idx = np.abs(blocks).argmax(axis=1)
    picked = blocks[np.arange(len(blocks)), idx].astype(F32)
    return np.where(picked == 0, F32(0.0), picked).astype(F32)


def _min_max(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C's ``if (v < min) min = v; if (v > max) max = v``: the first of equal values wins, which
    decides the sign of a zero minimum (−0.0 vs 0.0) stored in ``m``."""
    rows = np.arange(len(blocks))
    return (
        blocks[rows, blocks.argmin(axis=1)].astype(F32),
        blocks[rows, blocks.argmax(axis=1)].astype(F32),
    )


def _inverse(d: np.ndarray) -> np.ndarray:
    """C: ``id = d ? 1.0f/d : 0.0f``."""
    with np.errstate(divide="ignore"):
        return np.where(d != 0, F32(1.0) / d, F32(0.0)).astype(F32)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """Element j in the low nibble and element j + 16 in the high nibble of byte j."""
    return (q[:, : QK // 2] & 0x0F | (q[:, QK // 2 :] & 0x0F) << 4).astype(np.uint8)


def _unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)


def _pack_high_bits(q: np.ndarray) -> np.ndarray:
    """Bit 4 of element j goes to bit j of a little-endian uint32 (Q5_0/Q5_1 ``qh``)."""
    bits = ((q >> 4) & 1).astype(np.uint32)
    qh = (bits << np.arange(QK, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)
    return qh.astype("<u4").view(np.uint8).reshape(-1, 4)


def _unpack_high_bits(qh: np.ndarray) -> np.ndarray:
    word = np.ascontiguousarray(qh).view("<u4").reshape(-1, 1)
    return ((word >> np.arange(QK, dtype=np.uint32)) & 1).astype(np.int32)


class Q4_0(BlockFormat):
    """w = d·(q − 8), q in [0, 15]; d = max / −8 with max the signed absmax."""

    name = "Q4_0"
    block_size = QK
    type_size = 2 + QK // 2  # d: fp16, qs: 32 nibbles

    @classmethod
    def quantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        d = _signed_absmax(blocks) / F32(-8)
        idn = _inverse(d)[:, None]
        q = np.minimum(15, c_trunc_int8(blocks * idn + F32(8.5)))
        return np.concatenate([fp16_bytes(to_fp16(d, cls.name, "scale d")), _pack_nibbles(q)], 1)

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        d = bytes_fp16(blocks[:, :2])
        return ((_unpack_nibbles(blocks[:, 2:]) - 8).astype(F32) * d).astype(F32)


class Q4_1(BlockFormat):
    """w = d·q + m, q in [0, 15]; d = (max − min) / 15, m = min."""

    name = "Q4_1"
    block_size = QK
    type_size = 2 + 2 + QK // 2  # d, m: fp16, qs: 32 nibbles

    @classmethod
    def quantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        lo, hi = _min_max(blocks)
        d = (hi - lo) / F32(15)
        idn = _inverse(d)[:, None]
        q = np.minimum(15, c_trunc_int8((blocks - lo[:, None]) * idn + F32(0.5)))
        return np.concatenate(
            [
                fp16_bytes(to_fp16(d, cls.name, "scale d")),
                fp16_bytes(to_fp16(lo, cls.name, "minimum m")),
                _pack_nibbles(q),
            ],
            axis=1,
        )

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        d, m = bytes_fp16(blocks[:, :2]), bytes_fp16(blocks[:, 2:4])
        return (_unpack_nibbles(blocks[:, 4:]).astype(F32) * d + m).astype(F32)


class Q5_0(BlockFormat):
    """w = d·(q − 16), q in [0, 31]; d = max / −16; bit 4 of each q in a 32-bit ``qh``."""

    name = "Q5_0"
    block_size = QK
    type_size = 2 + 4 + QK // 2  # d: fp16, qh: 32 bits, qs: 32 nibbles

    @classmethod
    def quantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        d = _signed_absmax(blocks) / F32(-16)
        idn = _inverse(d)[:, None]
        q = np.minimum(31, c_trunc_int8(blocks * idn + F32(16.5)))
        return np.concatenate(
            [fp16_bytes(to_fp16(d, cls.name, "scale d")), _pack_high_bits(q), _pack_nibbles(q)],
            axis=1,
        )

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        d = bytes_fp16(blocks[:, :2])
        q = _unpack_nibbles(blocks[:, 6:]) | _unpack_high_bits(blocks[:, 2:6]) << 4
        return ((q - 16).astype(F32) * d).astype(F32)


class Q5_1(BlockFormat):
    """w = d·q + m, q in [0, 31]; d = (max − min) / 31, m = min."""

    name = "Q5_1"
    block_size = QK
    type_size = 2 + 2 + 4 + QK // 2  # d, m: fp16, qh: 32 bits, qs: 32 nibbles

    @classmethod
    def quantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        lo, hi = _min_max(blocks)
        d = (hi - lo) / F32(31)
        idn = _inverse(d)[:, None]
        # C: (uint8_t)(x0 + 0.5f), no clamp: (x - min)/d <= 31 + rounding
        q = c_trunc_int8((blocks - lo[:, None]) * idn + F32(0.5)) & 0xFF
        return np.concatenate(
            [
                fp16_bytes(to_fp16(d, cls.name, "scale d")),
                fp16_bytes(to_fp16(lo, cls.name, "minimum m")),
                _pack_high_bits(q),
                _pack_nibbles(q),
            ],
            axis=1,
        )

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        d, m = bytes_fp16(blocks[:, :2]), bytes_fp16(blocks[:, 2:4])
        q = _unpack_nibbles(blocks[:, 8:]) | _unpack_high_bits(blocks[:, 4:8]) << 4
        return (q.astype(F32) * d + m).astype(F32)


class Q8_0(BlockFormat):
    """w = d·q, q in [−127, 127]; d = absmax / 127, q = roundf(x / d)."""

    name = "Q8_0"
    block_size = QK
    type_size = 2 + QK  # d: fp16, qs: 32 int8

    @classmethod
    def quantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        d = np.abs(blocks).max(axis=1).astype(F32) / F32(127)
        q = c_roundf(blocks * _inverse(d)[:, None]).astype(np.int8)
        return np.concatenate(
            [fp16_bytes(to_fp16(d, cls.name, "scale d")), q.view(np.uint8)], axis=1
        )

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        d = bytes_fp16(blocks[:, :2])
        return (np.ascontiguousarray(blocks[:, 2:]).view(np.int8).astype(F32) * d).astype(F32)


def codes(fmt: type[BlockFormat], packed: np.ndarray) -> np.ndarray:
    """The unsigned codes q of each block (for range properties)."""
    if fmt is Q4_0:
        return _unpack_nibbles(packed[:, 2:])
    if fmt is Q4_1:
        return _unpack_nibbles(packed[:, 4:])
    if fmt is Q5_0:
        return _unpack_nibbles(packed[:, 6:]) | _unpack_high_bits(packed[:, 2:6]) << 4
    if fmt is Q5_1:
        return _unpack_nibbles(packed[:, 8:]) | _unpack_high_bits(packed[:, 4:8]) << 4
    if fmt is Q8_0:
        return np.ascontiguousarray(packed[:, 2:]).view(np.int8).astype(np.int32)
    raise TypeError(fmt)
