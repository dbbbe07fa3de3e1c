"""Hypothesis strategies shared by the quantization-formula tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


def weights(block: int, max_blocks: int = 4, magnitude: float = 1000.0) -> st.SearchStrategy:
    """Flat float32 arrays of whole blocks: finite, subnormals allowed, values a weight tensor
    (scaled by up to ``magnitude``) can hold without overflowing an fp16 block scale."""
    return st.integers(1, max_blocks).flatmap(
        lambda n: arrays(
            np.float32,
            n * block,
            elements=st.floats(
                -magnitude, magnitude, width=32, allow_nan=False, allow_infinity=False
            ),
        )
    )
