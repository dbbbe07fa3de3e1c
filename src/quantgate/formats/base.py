"""Shared base of the block formats: registration, reshaping rows into blocks, input checks."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from quantgate.configuration.schema_base import did_you_mean


class QuantizationError(ValueError):
    """Input the format cannot represent: NaN/inf, or a block scale that overflows its storage."""


FORMATS: dict[str, type[BlockFormat]] = {}


class BlockFormat:
    """A format storing ``block_size`` weights in ``type_size`` bytes.

    Subclasses set ``name``, ``block_size``, ``type_size`` (written as layout arithmetic) and
    implement ``quantize_blocks`` (float32 ``[n, block_size]`` -> uint8 ``[n, type_size]``) and
    ``dequantize_blocks`` (the inverse map to float32).
    """

    name: ClassVar[str]
    block_size: ClassVar[int]
    type_size: ClassVar[int]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in FORMATS:
                raise TypeError(f"format {cls.name} registered twice")
            FORMATS[cls.name] = cls

    @classmethod
    def _blocks(cls, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.size % cls.block_size:
            raise QuantizationError(
                f"{cls.name}: {x.size} values are not a multiple of the block size {cls.block_size}"
            )
        bad = ~np.isfinite(x)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            raise QuantizationError(
                f"{cls.name}: non-finite input {x.reshape(-1)[i]} at index {i}; "
                "NaN/inf weights cannot be quantized"
            )
        return x.reshape(-1, cls.block_size)

    @classmethod
    def quantize(cls, x: np.ndarray) -> np.ndarray:
        """Quantize a flat array; returns the packed bytes, ``[n_blocks, type_size]`` uint8."""
        # ggml computes 1/d in float32 even when d is subnormal (tiny blocks): the overflow and
        # the inf*0 that follow are part of the reference behaviour, not accidents to report
        with np.errstate(over="ignore", invalid="ignore"):
            out = cls.quantize_blocks(cls._blocks(x))
        assert out.dtype == np.uint8 and out.shape[1:] == (cls.type_size,), out.shape
        return out

    @classmethod
    def dequantize(cls, packed: np.ndarray) -> np.ndarray:
        packed = np.asarray(packed, dtype=np.uint8)
        if packed.size % cls.type_size:
            raise QuantizationError(
                f"{cls.name}: {packed.size} bytes are not a multiple of the block's {cls.type_size}"
            )
        return cls.dequantize_blocks(packed.reshape(-1, cls.type_size)).reshape(-1)

    @classmethod
    def quantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{cls.name}: quantization is not implemented in numpy")

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def get_format(name: str) -> type[BlockFormat]:
    if name not in FORMATS:
        raise KeyError(
            f"unknown format {name!r}{did_you_mean(name, FORMATS)}; known: {', '.join(FORMATS)}"
        )
    return FORMATS[name]


# -- helpers shared by the ggml formats -----------------------------------------------------------

FP16_MAX = float(np.finfo(np.float16).max)


def to_fp16(value: np.ndarray, fmt: str, what: str) -> np.ndarray:
    """float32 -> float16 with round-to-nearest-even, like GGML_FP32_TO_FP16, but an overflow
    is an error here where ggml silently stores inf (a documented deviation)."""
    value = np.asarray(value, dtype=np.float32)
    if (np.abs(value) > FP16_MAX).any():
        worst = float(np.abs(value).max())
        raise QuantizationError(
            f"{fmt}: block {what} {worst:g} overflows fp16 (max {FP16_MAX:g}); ggml would "
            "store inf: rescale the tensor"
        )
    with np.errstate(over="ignore"):
        half = value.astype(np.float16)
    # values within half an ulp of 65504 round to 65504, bigger ones already raised above
    return half


def fp16_bytes(half: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(half.astype("<f2")).view(np.uint8).reshape(half.shape[0], -1)


def bytes_fp16(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(raw).view("<f2").astype(np.float32)


def c_roundf(x: np.ndarray) -> np.ndarray:
    """C roundf: half away from zero. Exact in float64 for float32 inputs (np.round is
    half-to-even, and floor(|x| + 0.5) in float32 turns 0.49999997 into 1)."""
    x64 = np.asarray(x, dtype=np.float64)
    return (np.sign(x64) * np.floor(np.abs(x64) + 0.5)).astype(np.float32)


def c_trunc_int8(x: np.ndarray) -> np.ndarray:
    """``(int8_t)x`` for x within int8 range: truncation toward zero."""
    return np.trunc(np.asarray(x, dtype=np.float32)).astype(np.int32)
