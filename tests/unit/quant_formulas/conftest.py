"""Hypothesis profiles for the quantization-formula layer.

``default``: fast, for the project's own test command. ``thorough``: the nightly tier,
``pytest tests/unit/quant_formulas --hypothesis-profile=thorough``. The example database lives in
.hypothesis/ (git-ignored).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

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
