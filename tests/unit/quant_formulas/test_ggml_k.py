"""GGUF K-quants (Q4_K, Q6_K): layout, dequantization bit-exact with gguf-py and ggml C, and
properties of ggml's reference quantizer as read back by the numpy code."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType, quants
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quantgate.formats import ggml_c
from quantgate.formats.ggml_k import Q4_K, Q6_K

from .strategies import weights

pytestmark = pytest.mark.quant_formulas
KQ = [Q4_K, Q6_K]


def random_blocks(fmt):
    """Arbitrary bytes with finite fp16 super-block scales: every such block is a valid K-quant
    block, which exercises every bit of the unpacking."""

    def fix(raw):
        raw = raw.reshape(-1, fmt.type_size).copy()
        cols = [0, 2] if fmt is Q4_K else [208]
        for c in cols:
            half = raw[:, c : c + 2].copy().view("<f2")
            half[~np.isfinite(half)] = 1.0
            raw[:, c : c + 2] = half.view(np.uint8)
        return raw

    return st.integers(1, 3).flatmap(lambda n: arrays(np.uint8, n * fmt.type_size)).map(fix)


@pytest.mark.parametrize("fmt", KQ, ids=lambda f: f.name)
@given(data=st.data())
def test_dequantize_bit_exact_on_any_block(fmt, data):
    """dequantize(b) equals ggml's ``dequantize_row_*`` and gguf-py's bit for bit, for arbitrary
    block bytes (Q4_K's y = d·sc·q − dmin·m is fused by the C compiler: see ggml_k.py)."""
    blocks = data.draw(random_blocks(fmt))
    ours = fmt.dequantize(blocks)
    np.testing.assert_array_equal(
        ours.view(np.uint32), ggml_c.dequantize(fmt.name, blocks).view(np.uint32)
    )
    qtype = getattr(GGMLQuantizationType, fmt.name)
    gguf = quants.dequantize(blocks.reshape(1, -1), qtype).reshape(-1)
    np.testing.assert_array_equal(ours.view(np.uint32), gguf.view(np.uint32))


@pytest.mark.parametrize("fmt", KQ, ids=lambda f: f.name)
@given(data=st.data())
def test_pack_unpack_round_trip(fmt, data):
    """pack(unpack(b)) == b: the 6-bit scale/min packing of Q4_K (12 bytes for 8 pairs) and
    Q6_K's ql/qh split lose nothing."""
    blocks = data.draw(random_blocks(fmt))
    assert (fmt.pack(fmt.unpack(blocks)) == blocks).all()


@pytest.mark.parametrize("fmt", KQ, ids=lambda f: f.name)
@given(data=st.data())
def test_codes_and_scales_in_range(fmt, data):
    """Q4_K: q in [0, 15], sc and m in [0, 63]; Q6_K: q in [0, 63], sc in [−128, 127]."""
    b = fmt.unpack(data.draw(random_blocks(fmt)))
    if fmt is Q4_K:
        assert b.q.min() >= 0 and b.q.max() <= 15
        assert min(b.sc.min(), b.m.min()) >= 0 and max(b.sc.max(), b.m.max()) <= 63
    else:
        assert b.q.min() >= 0 and b.q.max() <= 63
        assert b.sc.min() >= -128 and b.sc.max() <= 127


@pytest.mark.parametrize("fmt", KQ, ids=lambda f: f.name)
@given(x=weights(256, max_blocks=2, magnitude=100.0))
def test_reference_quantizer_error_bound(fmt, x):
    """For ggml's quantizer, every weight whose code is not at the end of its range is within
    half a sub-block step of its value: |w − ŵ| ≤ |d·sc_j|/2 (+ float32 rounding), because the
    final codes are nearest_int((w + dmin·m_j)/(d·sc_j)) with the stored, rounded scales."""
    packed = fmt.quantize(x)
    b = fmt.unpack(packed)
    step = (b.d.astype(np.float64)[:, None] * b.sc).repeat(32 if fmt is Q4_K else 16, axis=1)
    top = 15 if fmt is Q4_K else 63
    inside = (b.q > 0) & (b.q < top) & (step != 0)
    assume(inside.any())
    err = np.abs(
        x.reshape(b.q.shape).astype(np.float64) - fmt.dequantize(packed).reshape(b.q.shape)
    )
    slack = 1e-5 * np.abs(x).max()
    assert (err[inside] <= np.abs(step[inside]) / 2 + slack).all()


@pytest.mark.parametrize("fmt", KQ, ids=lambda f: f.name)
def test_zero_super_block_is_exactly_zero(fmt):
    """An all-zero super-block dequantizes to exact zeros."""
    assert (fmt.dequantize(fmt.quantize(np.zeros(512, np.float32))) == 0).all()
