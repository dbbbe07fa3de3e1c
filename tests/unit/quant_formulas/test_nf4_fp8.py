"""NF4 (QLoRA NormalFloat, blocks of 64) and FP8 E4M3 (scaled, saturating)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quantgate.formats import QuantizationError, fp8, nf4

from .strategies import weights

pytestmark = pytest.mark.quant_formulas
MAX_GAP = float(np.diff(nf4.NF4_LEVELS).max())


def test_nf4_table_is_the_normal_float_construction():
    """The 16 levels equal bitsandbytes' create_normal_map (normal quantiles, offset 0.9677083,
    an exact 0, scaled to [−1, 1]) within float32 rounding."""
    np.testing.assert_allclose(nf4.normal_float_levels(), nf4.NF4_LEVELS, atol=2e-7)
    assert nf4.NF4_LEVELS[7] == 0.0 and nf4.NF4_LEVELS[0] == -1.0 and nf4.NF4_LEVELS[15] == 1.0


@given(x=weights(64, max_blocks=3, magnitude=10.0))
def test_nf4_nearest_level_and_error_bound(x):
    """Each code is the nearest level to w/absmax, so |w − ŵ| ≤ absmax·(largest gap)/2; codes in
    [0, 15]; the block's absmax element is exact (level ±1)."""
    codes, absmax = nf4.quantize(x)
    assert codes.max() <= 15
    blocks = x.reshape(-1, 64).astype(np.float64)
    normed = np.divide(
        blocks, absmax[:, None], out=np.zeros_like(blocks), where=absmax[:, None] > 0
    )
    dist = np.abs(normed[..., None] - nf4.NF4_LEVELS[None, None, :])
    chosen = np.take_along_axis(dist, codes[..., None].astype(np.int64), axis=-1)[..., 0]
    assert (chosen <= dist.min(axis=-1) + 1e-6).all()
    err = np.abs(blocks - nf4.dequantize(codes, absmax).reshape(blocks.shape))
    assert (err <= absmax[:, None] * (MAX_GAP / 2 + 1e-6)).all()
    at_max = np.abs(blocks) == absmax[:, None]
    assert (err[at_max] <= 1e-6 * absmax.max()).all()


@given(x=weights(64, max_blocks=2, magnitude=10.0))
def test_nf4_idempotent_and_zero_exact(x):
    """Quantizing ŵ gives the same codes; a zero weight maps to the 0 level (code 7) exactly."""
    x[3] = 0.0
    codes, absmax = nf4.quantize(x)
    deq = nf4.dequantize(codes, absmax)
    assert deq[3] == 0.0
    codes2, absmax2 = nf4.quantize(deq)
    assert (codes2 == codes).all()
    np.testing.assert_allclose(absmax2, absmax, rtol=1e-6)


@given(
    x=arrays(
        np.float32,
        st.integers(1, 300),
        elements=st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False),
    )
)
def test_fp8_cast_matches_ml_dtypes_bit_for_bit(x):
    """cast(clamp(x, ±448)) equals ml_dtypes.float8_e4m3fn (the same type as torch's), with
    round-to-nearest-even, and encode gives the same bytes (−0 keeps its sign)."""
    ref = np.clip(x, -448, 448).astype(ml_dtypes.float8_e4m3fn)
    ours = fp8.cast(x)
    np.testing.assert_array_equal(ours, ref.astype(np.float32))
    np.testing.assert_array_equal(fp8.encode(ours), ref.view(np.uint8))


def test_fp8_every_byte_decodes_like_ml_dtypes():
    """All 256 codes: the 254 finite values, ±NaN (S.1111.111), no infinities."""
    allb = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(
        fp8.decode(allb), allb.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    )


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (17.0, 16.0),  # halfway between 16 (mantissa 000) and 18 (001): ties to even, down
        (19.0, 20.0),  # halfway between 18 (001) and 20 (010): ties to even, up
        (1000.0, 448.0),  # saturates at the largest finite value
        (-1e30, -448.0),
        (2.0**-10, 0.0),  # half the smallest subnormal: ties to even (0)
        (3 * 2.0**-10, 2.0**-8),  # 1.5 subnormal steps: ties to even (2 steps)
    ],
)
def test_fp8_rounding_examples(x, expected):
    assert fp8.cast(np.array([x], np.float32))[0] == expected


@given(x=weights(1, max_blocks=256, magnitude=1000.0))
def test_fp8_scaled_error_bound(x):
    """With s = amax/448: relative error ≤ 2^−4 (half an ulp of a 3-bit mantissa) where |w/s| is
    in the normal range (≥ 2^−6), absolute error ≤ s·2^−10 (half the smallest subnormal) below."""
    try:
        codes, scale = fp8.quantize(x)
    except QuantizationError:  # scale below float32's normal range: test_fp8_hostile_inputs
        reject()
    deq = fp8.dequantize(codes, scale).astype(np.float64)
    x64 = x.astype(np.float64)
    normal = np.abs(x64 / scale) >= 2.0**-6
    assert (np.abs(deq - x64)[normal] <= np.abs(x64[normal]) * 2.0**-4 * (1 + 1e-6)).all()
    assert (np.abs(deq - x64)[~normal] <= scale * 2.0**-10 * (1 + 1e-6)).all()


def test_fp8_hostile_inputs():
    """NaN is an error; a tensor whose scale would underflow float32 (found by the thorough
    profile: amax 1e−45 divided by zero) is an error; an all-zero tensor is exact."""
    with pytest.raises(QuantizationError, match="NaN/inf"):
        fp8.quantize(np.array([1.0, np.nan], np.float32))
    with pytest.raises(QuantizationError, match="below float32's normal range"):
        fp8.quantize(np.array([1e-45, 0.0], np.float32))
    codes, scale = fp8.quantize(np.zeros(4, np.float32))
    assert (fp8.dequantize(codes, scale) == 0).all()
