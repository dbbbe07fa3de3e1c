"""Producing GGUF variants with llama.cpp's own quantizer (``llama_model_quantize``).

This is the code path of the ``llama-quantize`` tool, called in process through
llama-cpp-python, so a variant here is byte-for-byte what users ship. A quantization with an
importance matrix runs the tool itself (quantgate.artifacts.imatrix).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from quantgate import progress
from quantgate.artifacts.tensor_types import NO_OVERRIDES, TensorTypes
from quantgate.configuration.constants import LLAMA_QUANT_TYPES
from quantgate.errors import ArtifactError, ConfigError
from quantgate.night.machine import available_cores


def llama_cpp_version() -> str:
    import llama_cpp

    return str(llama_cpp.__version__)


def llama_quantize(
    src: Path,
    out: Path,
    quant_type: str,
    what: str,
    n_threads: int | None = None,
    overrides: TensorTypes = NO_OVERRIDES,
) -> None:
    """Write ``src`` re-typed as ``quant_type`` to ``out``, with per-tensor ``overrides``.

    Requantizing an already-quantized file is allowed (``allow_requantize``): the embedded
    default's F16 baseline is made this way from its Q4_1 file.

    Raises:
        ConfigError: a type that needs an importance matrix (the caller had none to give).
        ArtifactError: llama.cpp returned an error (the partial output is the caller's to drop).
    """
    import llama_cpp

    qt = LLAMA_QUANT_TYPES[quant_type]
    if qt.needs_imatrix:
        raise ConfigError(
            f"{what}: {quant_type} needs an importance matrix (llama.cpp imatrix), which only a "
            "compression takes (an imatrix: block): convert the baseline to another type"
        )
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, qt.ftype_attr)
    params.nthread = n_threads or available_cores()
    params.allow_requantize = True
    alive = overrides.apply(params)  # noqa: F841 - held until quantized
    with progress.step(f"{what}: llama_model_quantize {src.name} -> {quant_type}"):
        rc = llama_cpp.llama_model_quantize(
            str(src).encode(), str(out).encode(), ctypes.byref(params)
        )
    if rc != 0:
        raise ArtifactError(
            f"{what}: llama_model_quantize to {quant_type} failed (code {rc}); "
            "see llama.cpp's log above, check free disk space"
        )
