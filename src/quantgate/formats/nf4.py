"""NF4, QLoRA's 4-bit NormalFloat (Dettmers et al., 2023), as bitsandbytes stores it.

Blocks of 64 weights; each stores absmax (the block's largest |w|) and, per weight, the index
of the nearest of 16 fixed levels: ŵ = level[q] · absmax.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from quantgate.formats.base import QuantizationError

BLOCK = 64

# bitsandbytes/functional.py get_4bit_type("nf4") (the table in QLoRA's appendix E), float32.
NF4_LEVELS = np.array(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=np.float32,
)


def normal_float_levels(offset: float = 0.9677083) -> np.ndarray:
    """The NF4 construction (bitsandbytes ``create_normal_map``): 8 positive quantiles and 7
    negative ones of N(0, 1) between ``offset`` and 0.5, plus an exact zero, scaled to [−1, 1]."""
    nd = NormalDist()
    n_pos, n_neg = 8, 7
    pos = [nd.inv_cdf(offset - (offset - 0.5) * i / n_pos) for i in range(n_pos)]
    neg = [-nd.inv_cdf(offset - (offset - 0.5) * i / n_neg) for i in range(n_neg)]
    levels = np.array(sorted([*pos, 0.0, *neg]), dtype=np.float64)
    return (levels / np.abs(levels).max()).astype(np.float32)


def quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[n_blocks, 64]`` (uint8 in [0, 15]) and absmax ``[n_blocks]`` (float32)."""
    w = np.asarray(w, dtype=np.float32)
    if w.size % BLOCK:
        raise QuantizationError(f"NF4: {w.size} weights are not a multiple of {BLOCK}")
    if not np.isfinite(w).all():
        raise QuantizationError("NF4: NaN/inf weights cannot be quantized")
    blocks = w.reshape(-1, BLOCK)
    absmax = np.abs(blocks).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        normed = np.where(absmax[:, None] > 0, blocks / absmax[:, None], 0.0).astype(np.float32)
    # nearest level; the midpoints between levels decide, ties go to the lower level
    mids = (NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2
    codes = np.searchsorted(mids, normed, side="left").astype(np.uint8)
    return codes, absmax


def dequantize(codes: np.ndarray, absmax: np.ndarray) -> np.ndarray:
    return (NF4_LEVELS[codes] * absmax[:, None]).astype(np.float32).reshape(-1)
