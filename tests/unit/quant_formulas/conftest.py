"""Hypothesis profiles for the quantization-formula layer.

``default``: fast, for the project's own test command. ``thorough``: the nightly tier,
``pytest tests/unit/quant_formulas --hypothesis-profile=thorough``. The example database lives in
.hypothesis/ (git-ignored).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

# derandomize: the project's test command (and CI) runs the same examples every time; the
# thorough profile explores new ones each night and keeps failures in .hypothesis/
settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")


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
