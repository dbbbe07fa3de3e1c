"""Deliberately damaged copies of a GGUF, for proving that the gates fail what they must."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
from gguf import GGUFReader


def damaged_copy(src: Path, dst: Path, pattern: str, how: str, seed: int = 0) -> Path:
    """Copy ``src`` to ``dst`` and damage every tensor whose name matches ``pattern`` in place.

    Args:
        how: ``shuffle`` permutes the tensor's values (same statistics, wrong positions: the
            model still loads and runs, but badly); ``nan`` fills it with NaN.
    """
    shutil.copyfile(src, dst)
    reader = GGUFReader(dst, "r+")
    rng = np.random.default_rng(seed)
    hit = 0
    for tensor in reader.tensors:
        if not re.fullmatch(pattern, tensor.name):
            continue
        data = tensor.data  # a writable view into the memory-mapped file
        if data.dtype not in (np.float16, np.float32):
            raise ValueError(f"{tensor.name}: damage needs an F16/F32 tensor, got {data.dtype}")
        flat = data.reshape(-1)
        if how == "shuffle":
            flat[:] = rng.permutation(np.asarray(flat))
        elif how == "nan":
            flat[:] = np.nan
        else:
            raise ValueError(how)
        hit += 1
    if not hit:
        raise ValueError(f"no tensor matches {pattern!r} in {src}")
    reader.data.flush()
    del reader
    return dst
