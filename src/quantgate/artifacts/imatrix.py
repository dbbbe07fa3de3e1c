"""Importance-matrix GGUF quantization with llama.cpp's own tools.

``llama-imatrix`` runs the model over a calibration text and keeps, per weight matrix, the mean
squared activation of each input column; ``llama-quantize --imatrix`` then weights each
column's rounding error by it. The low-bit types llama.cpp refuses without one are flagged in
quantgate.configuration.constants (``needs_imatrix``); the other types take one if given.

llama-cpp-python's ``llama_model_quantize`` accepts the matrix only as a C++
``unordered_map``, which Python cannot build, so both steps run the tools built from the same
llama.cpp sdist as the in-process library (quantgate.artifacts.llama_tools). Each runs in its
input's folder with a bare file name: the names llama.cpp records in the outputs' metadata
(``quantize.imatrix.file``, the imatrix's dataset) do not depend on the cache's location.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from quantgate import progress
from quantgate.artifacts.llama_tools import tool
from quantgate.artifacts.tensor_types import NO_OVERRIDES, TensorTypes
from quantgate.errors import ToolError
from quantgate.llama_placement import tool_command
from quantgate.night.machine import available_cores


def compute_imatrix(
    model: Path, calibration: Path, out: Path, chunks: int, n_ctx: int, what: str
) -> None:
    """Write the importance matrix of ``model`` over ``chunks`` chunks of ``n_ctx`` tokens of
    ``calibration`` to ``out`` (GGUF format, whatever ``out``'s name).

    Raises:
        ToolError: llama-imatrix failed (its error lines say why, e.g. a text shorter than
            two chunks).
    """
    args = [
        str(tool("llama-imatrix")),
        *("-m", str(model.resolve())),
        *("-f", calibration.name),
        *("-o", str(out.resolve())),
        *("--output-format", "gguf"),
        *("--chunks", str(chunks)),
        *("-c", str(n_ctx)),
        *("-t", str(available_cores())),
        "--no-ppl",  # the gate measures PPL itself, on another text
    ]
    with progress.step(f"{what}: llama-imatrix over {chunks} chunks of {calibration.name}"):
        _run(args, calibration.parent, what, "llama-imatrix")


def quantize_with_imatrix(
    src: Path,
    out: Path,
    quant_type: str,
    imatrix: Path,
    what: str,
    overrides: TensorTypes = NO_OVERRIDES,
) -> None:
    """``llama-quantize --imatrix``: ``src`` re-typed as ``quant_type`` to ``out``, with
    per-tensor ``overrides``; requantizing is allowed, as for the in-process quantizer.

    Raises:
        ToolError: llama-quantize failed.
    """
    args = [
        str(tool("llama-quantize")),
        "--allow-requantize",
        *("--imatrix", imatrix.name),
        *overrides.tool_args(),
        str(src.resolve()),
        str(out.resolve()),
        quant_type,
        str(available_cores()),
    ]
    with progress.step(f"{what}: llama-quantize --imatrix {src.name} -> {quant_type}"):
        _run(args, imatrix.parent, what, "llama-quantize")


#: a line llama.cpp's logger marks as an error: "<seconds> E <text>"
_LOG_ERROR = re.compile(r"^[\d.]+ E (.*)$")


def _run(args: list[str], cwd: Path, what: str, name: str) -> None:
    # on an AMX machine through llama_placement's launcher: the tools' AMX path crashes too
    proc = subprocess.run(tool_command(args), cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines()]
        errors = [m.group(1) for line in lines if (m := _LOG_ERROR.match(line))]
        why = "; ".join(errors[-3:]) or next((x for x in reversed(lines) if x), "no output")
        raise ToolError(f"{what}: {name} failed (exit {proc.returncode}): {why}")
