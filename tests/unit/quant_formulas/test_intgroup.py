"""Asymmetric integer group quantization (AWQ/GPTQ storage): w ≈ s·(q − z)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from quantgate.formats import QuantizationError, intgroup

from .strategies import weights

pytestmark = pytest.mark.quant_formulas
CASES = [(4, 128), (4, 64), (4, 32), (8, 128)]


@pytest.mark.parametrize(("bits", "group"), CASES, ids=lambda c: str(c))
@given(data=st.data())
def test_codes_zero_points_and_error_bound(bits, group, data):
    """q and z lie in [0, 2^b − 1]; |w − ŵ| ≤ s for every weight (rounding the zero point can
    push the group's extreme one code past the end, where it clamps) and ≤ s/2 for weights whose
    code is not clamped; s is the group's stored fp16 scale, plus float32 rounding."""
    x = data.draw(weights(group, max_blocks=3, magnitude=10.0))
    try:
        g = intgroup.quantize(x, bits, group)
    except QuantizationError:  # a group range below fp16's scales: test_hostile_inputs
        reject()
    qmax = 2**bits - 1
    assert g.q.min() >= 0 and g.q.max() <= qmax and g.zero.min() >= 0 and g.zero.max() <= qmax
    s = g.scale.astype(np.float64)[:, None]
    err = np.abs(x.reshape(g.q.shape) - g.dequantize().reshape(g.q.shape))
    slack = 1e-6 * (1 + np.abs(x).max())
    assert (err <= s + slack).all()
    free = (g.q > 0) & (g.q < qmax)
    assert (err[free] <= (s / 2 + slack).repeat(group, axis=1)[free]).all()


@pytest.mark.parametrize(("bits", "group"), CASES, ids=lambda c: str(c))
@given(data=st.data())
def test_zero_is_exact_and_idempotent(bits, group, data):
    """0 is always representable (q = z gives ŵ = 0), and re-quantizing ŵ moves no weight by more
    than one step s. Not exactly idempotent: the scale is rounded to fp16, so the largest ŵ may
    fall short of the group's max and the second pass picks a slightly different scale."""
    x = data.draw(weights(group, max_blocks=2, magnitude=10.0))
    x[0] = 0.0
    try:
        g = intgroup.quantize(x, bits, group)
    except QuantizationError:
        reject()
    deq = g.dequantize()
    assert deq[0] == 0.0
    step = float(g.scale.astype(np.float32).max())
    np.testing.assert_allclose(
        intgroup.quantize(deq, bits, group).dequantize(), deq, atol=step * (1 + 1e-3)
    )


@given(q=st.lists(st.integers(0, 15), min_size=2, max_size=64).filter(lambda v: len(v) % 2 == 0))
def test_int4_pack_round_trip(q):
    """Two int4 codes per byte, low nibble first, round-trip."""
    assert intgroup.unpack_int4(intgroup.pack_int4(np.array(q))).tolist() == q


def test_hostile_inputs():
    """NaN is an error; a group below fp16's smallest scale is an error, never a garbage code."""
    with pytest.raises(QuantizationError, match="NaN/inf"):
        intgroup.quantize(np.full(128, np.nan, np.float32))
    with pytest.raises(QuantizationError, match="below fp16's smallest scale"):
        intgroup.quantize(np.full(128, 1e-12, np.float32))
