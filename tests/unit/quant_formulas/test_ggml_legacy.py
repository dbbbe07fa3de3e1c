"""GGUF legacy blocks of 32 (Q4_0, Q5_0, Q8_0 type-0; Q4_1, Q5_1 type-1): properties of the numpy
reference, and bit-for-bit agreement with gguf-py and with ggml's C."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType, quants
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

from quantgate.formats import QuantizationError, ggml_c
from quantgate.formats import ggml_legacy as L

from .strategies import weights

pytestmark = [
    pytest.mark.quant_formulas,
    # gguf-py divides by subnormal scales too (as ggml does): its overflow warnings are expected
    pytest.mark.filterwarnings("ignore::RuntimeWarning:gguf.quants"),
]

TYPE0 = [L.Q4_0, L.Q5_0, L.Q8_0]
TYPE1 = [L.Q4_1, L.Q5_1]
ALL = TYPE0 + TYPE1
# the code range of each format, and the offset subtracted before scaling (type-0)
CODES = {"Q4_0": (0, 15), "Q5_0": (0, 31), "Q8_0": (-127, 127), "Q4_1": (0, 15), "Q5_1": (0, 31)}
OFFSET = {"Q4_0": 8, "Q5_0": 16, "Q8_0": 0}
F16_EPS = 2.0**-11  # relative rounding of float32 -> float16 (normal range)


def scales(fmt, packed):
    d = packed[:, 0:2].copy().view("<f2").astype(np.float64).reshape(-1)
    m = packed[:, 2:4].copy().view("<f2").astype(np.float64).reshape(-1) if fmt in TYPE1 else None
    return d, m


def assert_same_bytes(fmt, ours, theirs, x, who):
    bad = np.flatnonzero(~(ours == theirs).all(axis=1))
    if len(bad):
        i = int(bad[0])
        note(f"{fmt.name} block {i} input: {x.reshape(-1, 32)[i].tolist()}")
        raise AssertionError(
            f"{fmt.name}: {len(bad)}/{len(ours)} blocks differ from {who}; "
            f"first: ours {ours[i].tolist()} vs {theirs[i].tolist()}"
        )


def unsigned_zero_scales(fmt, packed):
    """The bytes with a −0.0 scale or minimum written as +0.0.

    gguf-py differs from ggml's C on the sign of zero: for a block of −0.0 values C keeps
    ``max = 0.0f`` (its initial value) and stores d = +0.0... then −0.0/−8; gguf-py takes the
    −0.0 element itself. The values are identical; only that sign bit differs.
    """
    out = packed.copy()
    for lo in (0, 2) if fmt in TYPE1 else (0,):
        field = out[:, lo : lo + 2].copy().view("<f2").reshape(-1)
        zero = field == 0
        out[zero, lo : lo + 2] = 0
    return out


def check_matches_references(fmt, x):
    """Bytes from quantize and float32 bits from dequantize equal ggml C's; gguf-py's too, up
    to the sign of a zero scale (see unsigned_zero_scales)."""
    ours = fmt.quantize(x)
    qtype = getattr(GGMLQuantizationType, fmt.name)
    assert_same_bytes(fmt, ours, ggml_c.quantize(fmt.name, x), x, "ggml C")
    theirs = quants.quantize(x.reshape(1, -1), qtype).reshape(ours.shape)
    assert_same_bytes(
        fmt, unsigned_zero_scales(fmt, ours), unsigned_zero_scales(fmt, theirs), x, "gguf-py"
    )
    deq = fmt.dequantize(ours)
    np.testing.assert_array_equal(
        deq.view(np.uint32), ggml_c.dequantize(fmt.name, ours).view(np.uint32)
    )
    np.testing.assert_array_equal(
        deq.view(np.uint32),
        quants.dequantize(ours.reshape(1, -1), qtype).reshape(-1).view(np.uint32),
    )


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
@given(x=weights(32))
def test_bit_exact_with_gguf_py_and_ggml_c(fmt, x):
    """quantize(x) is byte-identical and dequantize(q) bit-identical to gguf-py's ``quants`` and
    to ggml's ``quantize_row_*_ref``/``dequantize_row_*`` as shipped in llama-cpp-python."""
    check_matches_references(fmt, x)


@pytest.mark.parametrize("fmt", TYPE0, ids=lambda f: f.name)
@given(x=weights(32))
def test_type0_error_bound(fmt, x):
    """Type-0, w ≈ d·(q − o): |w − ŵ| ≤ |d|/2 for codes inside the range and ≤ |d| for a code
    clamped at the top (Q4_0/Q5_0 map the signed absmax to −o, so the other end of
    [−o, o − 1] is one step short), plus the fp16 rounding of d: |q − o|·|d − fp16(d)|."""
    packed = fmt.quantize(x)
    d16, _ = scales(fmt, packed)
    xb = x.reshape(-1, 32).astype(np.float64)
    d32 = (
        np.abs(xb).max(axis=1) / 127
        if fmt is L.Q8_0
        else xb[np.arange(len(xb)), np.abs(xb).argmax(axis=1)] / -OFFSET[fmt.name]
    )
    # below fp16's range the scale is stored as 0 (and 1/d overflows float32, so the codes are
    # meaningless): test_subnormal_inputs_give_a_documented_result covers that regime
    assume(((d16 != 0) | (d32 == 0)).all())
    q = L.codes(fmt, packed) - OFFSET.get(fmt.name, 0)
    err = np.abs(xb - fmt.dequantize(packed).reshape(xb.shape))
    hi = CODES[fmt.name][1]
    clamped = (q + OFFSET.get(fmt.name, 0)) == hi
    step = np.where(clamped & (fmt is not L.Q8_0), 1.0, 0.5)
    bound = (
        step * np.abs(d32)[:, None]
        + np.abs(q) * np.abs(d32 - d16)[:, None]
        + 1e-6 * np.abs(xb).max(axis=1, keepdims=True)
    )
    assert (err <= bound).all(), float((err - bound).max())


@pytest.mark.parametrize("fmt", TYPE1, ids=lambda f: f.name)
@given(x=weights(32))
def test_type1_error_bound_and_exact_min(fmt, x):
    """Type-1, w ≈ d·q + m with d = (max − min)/(2^b − 1): |w − ŵ| ≤ d/2 + |m − fp16(m)| +
    q·|d − fp16(d)|; the block minimum comes back as fp16(min) exactly (q = 0)."""
    packed = fmt.quantize(x)
    d16, m16 = scales(fmt, packed)
    xb = x.reshape(-1, 32).astype(np.float64)
    lo, hi = xb.min(axis=1), xb.max(axis=1)
    d32 = (hi - lo) / CODES[fmt.name][1]
    assume(((d16 != 0) | (d32 == 0)).all())  # see test_type0_error_bound
    q = L.codes(fmt, packed)
    deq = fmt.dequantize(packed).reshape(xb.shape).astype(np.float64)
    bound = (
        d32[:, None] / 2
        + np.abs(lo - m16)[:, None]
        + q * np.abs(d32 - d16)[:, None]
        + 1e-6 * np.abs(xb).max(axis=1, keepdims=True)
    )
    assert (np.abs(xb - deq) <= bound).all()
    at_min = xb == lo[:, None]
    assert (deq[at_min] == np.broadcast_to(m16[:, None], xb.shape)[at_min]).all()


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
@given(x=weights(32))
def test_codes_in_range(fmt, x):
    """Every code lies in the format's range (Q4: 0–15, Q5: 0–31, Q8_0: −127–127)."""
    q = L.codes(fmt, fmt.quantize(x))
    lo, hi = CODES[fmt.name]
    assert q.min() >= lo and q.max() <= hi


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
@given(x=weights(32))
def test_idempotent(fmt, x):
    """Quantizing a dequantized block gives back the same codes and the same scales (as numbers:
    a minimum of −0.0 dequantizes to +0.0, so ``m`` may come back as +0), whenever the scale is
    a nonzero fp16 number (a scale that underflows to 0 maps the block to zeros, whose own
    quantization has other codes and the same values)."""
    packed = fmt.quantize(x)
    d16, m16 = scales(fmt, packed)
    assume((d16 != 0).all())
    again = fmt.quantize(fmt.dequantize(packed))
    d2, m2 = scales(fmt, again)
    assert (L.codes(fmt, again) == L.codes(fmt, packed)).all()
    assert (d2 == d16).all() and (m16 is None or (m2 == m16).all())


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_zero_block_is_exactly_zero(fmt):
    """An all-zero block dequantizes to exactly zero (d = 0, id = 0)."""
    assert (fmt.dequantize(fmt.quantize(np.zeros(64, np.float32))) == 0).all()


# the divisor that maps a block's absmax to its scale (type-1 constant blocks have d = 0)
DIVISOR = {"Q4_0": 8, "Q5_0": 16, "Q8_0": 127, "Q4_1": 1, "Q5_1": 1}


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
@given(c=st.floats(-1000, 1000, width=32).filter(lambda v: v != 0))
def test_constant_block_within_scale_rounding(fmt, c):
    """A constant block c comes back within the fp16 rounding of its scale: type-0 stores
    d = c/k (k = 8, 16, 127) and returns k·fp16(d), type-1 stores d = 0, m = c and returns
    fp16(c). fp16 rounds with relative error 2^−11 in its normal range and absolute error 2^−25
    (half its smallest subnormal) below, so |ŵ − c| ≤ k·max(|c/k|·2^−11, 2^−25)."""
    k = DIVISOR[fmt.name]
    x = np.full(32, c, dtype=np.float32)
    deq = fmt.dequantize(fmt.quantize(x)).astype(np.float64)
    bound = k * max(abs(c / k) * F16_EPS, 2.0**-25) * (1 + 1e-6)
    assert (np.abs(deq - c) <= bound).all()


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
@given(x=weights(32, magnitude=100.0), k=st.integers(-4, 4))
def test_power_of_two_scaling_is_exact(fmt, x, k):
    """quantize(2^k·x) has the same codes and 2^k times the scales, so dequantize(quantize(2^k·x))
    = 2^k·dequantize(quantize(x)) exactly, while every scale stays a normal fp16 number."""
    alpha = np.float32(2.0**k)
    base = fmt.quantize(x)
    d16, m16 = scales(fmt, base)
    smallest_normal = 2.0**-14
    xb = x.reshape(-1, 32)
    # the exact values the scales encode: a zero must be a real zero, not an fp16 underflow
    exact = [(d16, np.abs(xb).max(axis=1))]
    if m16 is not None:
        exact.append((m16, xb.min(axis=1)))
    for stored, source in exact:
        real_zero = (stored == 0) & ((source == 0) | (np.abs(xb).max(axis=1) == 0))
        normal = np.abs(stored) * min(1, alpha) >= smallest_normal
        assume((real_zero | normal).all())
    scaled = fmt.dequantize(fmt.quantize(x * alpha))
    np.testing.assert_array_equal(scaled, fmt.dequantize(base) * alpha)


@given(q=st.lists(st.integers(0, 31), min_size=32, max_size=32))
def test_pack_unpack_round_trip(q):
    """Nibble and high-bit packing (Q4/Q5 ``qs`` and ``qh``) round-trip every code."""
    codes = np.array([q], dtype=np.int32)
    nib = L._pack_nibbles(codes)
    assert (L._unpack_nibbles(nib) == (codes & 0xF)).all()
    assert (L._unpack_high_bits(L._pack_high_bits(codes)) == (codes >> 4) & 1).all()


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_an_error(fmt, bad):
    """NaN/±inf anywhere in the input: a QuantizationError naming the index (ggml would write a
    NaN scale and garbage codes)."""
    x = np.ones(64, np.float32)
    x[37] = bad
    with pytest.raises(QuantizationError, match=r"non-finite input .* at index 37"):
        fmt.quantize(x)


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
def test_scale_overflowing_fp16_is_an_error(fmt):
    """A block whose scale exceeds fp16's 65504 (|w| ≈ 1e7) is an error, where ggml silently
    stores an infinite scale."""
    x = np.zeros(32, np.float32)
    x[0], x[1] = 1e7, -1e7
    with pytest.raises(QuantizationError, match="overflows fp16"):
        fmt.quantize(x)


@pytest.mark.parametrize("fmt", ALL, ids=lambda f: f.name)
@given(x=weights(32, magnitude=float(np.float32(1e-38))))
def test_subnormal_inputs_give_a_documented_result(fmt, x):
    """Tiny blocks (|w| ≲ 1e-38, float32 subnormals) make a scale far below fp16's smallest
    subnormal: it is stored as 0 (1/d even overflows float32, so the codes are meaningless) and
    the block dequantizes to zeros (type-1: fp16(min) = ±0), an error of at most the block's
    largest |w| — harmless, and byte-for-byte what ggml does."""
    deq = fmt.dequantize(fmt.quantize(x))
    assert (deq == 0).all()
    check_matches_references(fmt, x)


class Q4_0_PlantedBug(L.Q4_0):
    """A copy of Q4_0 with a planted off-by-one: codes clamp at 14 instead of 15."""

    @classmethod
    def quantize_blocks(cls, blocks):
        d = L._signed_absmax(blocks) / np.float32(-8)
        q = np.minimum(14, L.c_trunc_int8(blocks * L._inverse(d)[:, None] + np.float32(8.5)))
        return np.concatenate([L.fp16_bytes(L.to_fp16(d, "Q4_0", "d")), L._pack_nibbles(q)], 1)


def test_the_differential_property_finds_a_planted_bug():
    """The bit-exact property, run against a deliberately wrong quantizer, fails and shrinks
    to a small counterexample."""
    Q4_0_PlantedBug.name = "Q4_0"  # compare against the real Q4_0's references

    @settings(max_examples=500, database=None)
    @given(x=weights(32, max_blocks=2))
    def prop(x):
        check_matches_references(Q4_0_PlantedBug, x)

    with pytest.raises(AssertionError, match="Q4_0: 1/1 blocks differ from ggml C"):
        prop()
