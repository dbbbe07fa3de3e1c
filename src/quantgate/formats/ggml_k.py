"""GGUF K-quants: super-blocks of 256 weights with quantized sub-block scales (ggml-quants.c).

Q4_K (type-1): 8 sub-blocks of 32, w = d·sc_j·q − dmin·m_j, q in [0, 15], sc_j and m_j 6-bit.
Q6_K (type-0): 16 sub-blocks of 16, w = d·sc_j·(q − 32), q in [0, 63], sc_j int8.

Here numpy reads and writes the byte layout (``unpack``/``pack``) and dequantizes exactly like
``dequantize_row_q4_K``/``_q6_K``. Choosing K-quant scales is an iterative search in ggml
(``make_qkx2_quants``, ``make_qx_quants``) whose float accumulation order numpy cannot reproduce
bit for bit, so ``quantize`` calls ggml's reference C (``quantize_row_*_ref``) and the properties
check its output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantgate.formats import ggml_c
from quantgate.formats.base import BlockFormat, fp16_bytes

QK_K = 256
K_SCALE_SIZE = 12
F32 = np.float32


class _KQuant(BlockFormat):
    """Quantizes with ggml's reference C (see the module docstring); numpy does the rest."""

    @classmethod
    def quantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        return ggml_c.quantize(cls.name, blocks)


@dataclass(frozen=True)
class Q4KBlocks:
    d: np.ndarray  # [n] float16 super-block scale of the scales
    dmin: np.ndarray  # [n] float16 super-block scale of the mins
    sc: np.ndarray  # [n, 8] 6-bit sub-block scales
    m: np.ndarray  # [n, 8] 6-bit sub-block mins
    q: np.ndarray  # [n, 256] 4-bit codes, in weight order


class Q4_K(_KQuant):
    name = "Q4_K"
    block_size = QK_K
    type_size = 2 + 2 + K_SCALE_SIZE + QK_K // 2  # d, dmin: fp16; scales: 12; qs: 256 nibbles

    @staticmethod
    def unpack(blocks: np.ndarray) -> Q4KBlocks:
        n = len(blocks)
        d = np.ascontiguousarray(blocks[:, 0:2]).view("<f2").reshape(n)
        dmin = np.ascontiguousarray(blocks[:, 2:4]).view("<f2").reshape(n)
        s = blocks[:, 4:16].astype(np.int32)
        # get_scale_min_k4: scales 0-3 and mins 0-3 are the low 6 bits of bytes 0-7; scales and
        # mins 4-7 keep their low 4 bits in bytes 8-11 and their top 2 bits in bytes 0-7's bits 6-7
        sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], 1)
        m = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], 1)
        qs = blocks[:, 16:].astype(np.int32).reshape(n, 4, 32)
        # each 32-byte group holds sub-block 2g in its low nibbles and 2g+1 in its high nibbles
        q = np.stack([qs & 0xF, qs >> 4], axis=2).reshape(n, QK_K)
        return Q4KBlocks(d, dmin, sc, m, q)

    @staticmethod
    def pack(b: Q4KBlocks) -> np.ndarray:
        n = len(b.d)
        sc, m = b.sc.astype(np.int32), b.m.astype(np.int32)
        scales = np.concatenate(
            [
                sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6),
                m[:, 0:4] | ((m[:, 4:8] >> 4) << 6),
                (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4),
            ],
            axis=1,
        ).astype(np.uint8)
        q = b.q.reshape(n, 4, 2, 32).astype(np.int32)
        qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(n, 128).astype(np.uint8)
        return np.concatenate([fp16_bytes(b.d), fp16_bytes(b.dmin), scales, qs], axis=1)

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        b = cls.unpack(blocks)
        d, dmin = b.d.astype(F32)[:, None], b.dmin.astype(F32)[:, None]
        d_sub = (d * b.sc.astype(F32)).astype(F32)  # C: d1 = d * sc
        m_sub = (dmin * b.m.astype(F32)).astype(F32)  # C: m1 = min * m
        d_el = np.repeat(d_sub, 32, axis=1)
        m_el = np.repeat(m_sub, 32, axis=1)
        # C: d1 * q - m1. GCC contracts this into one fused multiply-add where the CPU has FMA
        # (-march=native builds); the product of two float32 is exact in float64, so computing in
        # float64 and rounding once reproduces the fused result.
        return (d_el.astype(np.float64) * b.q - m_el).astype(F32)


@dataclass(frozen=True)
class Q6KBlocks:
    d: np.ndarray  # [n] float16
    sc: np.ndarray  # [n, 16] int8 sub-block scales
    q: np.ndarray  # [n, 256] 6-bit codes in [0, 63], in weight order


class Q6_K(_KQuant):
    name = "Q6_K"
    block_size = QK_K
    type_size = QK_K // 2 + QK_K // 4 + QK_K // 16 + 2  # ql: 4 bits, qh: 2 bits, scales, d

    @staticmethod
    def unpack(blocks: np.ndarray) -> Q6KBlocks:
        n = len(blocks)
        ql = blocks[:, 0:128].astype(np.int32).reshape(n, 2, 64)
        qh = blocks[:, 128:192].astype(np.int32).reshape(n, 2, 32)
        sc = np.ascontiguousarray(blocks[:, 192:208]).view(np.int8).astype(np.int32)
        d = np.ascontiguousarray(blocks[:, 208:210]).view("<f2").reshape(n)
        # per 128-weight half: weights l, l+32, l+64, l+96 take ql[l] low, ql[l+32] low,
        # ql[l] high, ql[l+32] high nibbles, and qh[l] bits 0-1, 2-3, 4-5, 6-7
        q = np.stack(
            [
                (ql[:, :, 0:32] & 0xF) | (((qh >> 0) & 3) << 4),
                (ql[:, :, 32:64] & 0xF) | (((qh >> 2) & 3) << 4),
                (ql[:, :, 0:32] >> 4) | (((qh >> 4) & 3) << 4),
                (ql[:, :, 32:64] >> 4) | (((qh >> 6) & 3) << 4),
            ],
            axis=2,
        ).reshape(n, QK_K)
        return Q6KBlocks(d, sc, q)

    @staticmethod
    def pack(b: Q6KBlocks) -> np.ndarray:
        n = len(b.d)
        q = b.q.reshape(n, 2, 4, 32).astype(np.int32)
        ql = np.concatenate(
            [
                (q[:, :, 0] & 0xF) | ((q[:, :, 2] & 0xF) << 4),
                (q[:, :, 1] & 0xF) | ((q[:, :, 3] & 0xF) << 4),
            ],
            axis=2,
        )
        qh = (
            (q[:, :, 0] >> 4)
            | ((q[:, :, 1] >> 4) << 2)
            | ((q[:, :, 2] >> 4) << 4)
            | ((q[:, :, 3] >> 4) << 6)
        )
        return np.concatenate(
            [
                ql.reshape(n, 128).astype(np.uint8),
                qh.reshape(n, 64).astype(np.uint8),
                b.sc.astype(np.int8).view(np.uint8),
                fp16_bytes(b.d),
            ],
            axis=1,
        )

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        b = cls.unpack(blocks)
        d = b.d.astype(F32)[:, None]
        d_sub = (d * b.sc.astype(F32)).astype(F32)  # C: d * sc[is], then * q
        return (np.repeat(d_sub, 16, axis=1) * (b.q - 32).astype(F32)).astype(F32)
