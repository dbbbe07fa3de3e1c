"""llm-compressor's oneshot (GPTQ, AWQ, FP8, SmoothQuant W8A8) as a compression method.

llm-compressor 0.14 pins transformers <= 5.17 and compressed-tensors 0.19, older than the
transformers lm-eval and the gate run on, so the quantizer runs in its own environment
(``make quantize-env``: .venv-quantize) as a child process, the way llm-compressor's own tests
keep their environment apart. The gate's environment only needs compressed-tensors (the same
0.19) to load what it wrote. The output is a compressed-tensors checkpoint, cached like the
GGUF variants, keyed by the input, the recipe, the calibration text and the quantizer's versions.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from collections import deque
from pathlib import Path
from typing import Any

from quantgate import progress
from quantgate.artifacts.cache import build_once, cache_key, cache_root
from quantgate.errors import ArtifactError, ConfigError

#: Bump when the job's protocol (calibration rows, dtype, save format) changes.
JOB_VERSION = 1
JOB_SCRIPT = Path(__file__).with_name("llm_compressor_job.py")
ENV_VAR = "QUANTGATE_QUANTIZER_PYTHON"
VENV_NAME = ".venv-quantize"


def quantizer_python(start: Path, where: str) -> Path:
    """The quantizer environment's python: $QUANTGATE_QUANTIZER_PYTHON, else the first
    ``.venv-quantize`` found from ``start`` (the registry's folder), then from the working
    directory, upwards.

    Raises:
        ConfigError: neither exists.
    """
    if os.environ.get(ENV_VAR):
        python = Path(os.environ[ENV_VAR])
        if not python.is_file():
            raise ConfigError(f"{where}: {ENV_VAR}={python} is not a file; point it at a python")
        return python
    cwd = Path.cwd()
    for folder in (start, *start.parents, cwd, *cwd.parents):
        python = folder / VENV_NAME / "bin" / "python"
        if python.is_file():
            return python
    raise ConfigError(
        f"{where}: method llm_compressor runs in its own environment (it pins transformers "
        f"<= 5.17); create it with `make quantize-env`, or set {ENV_VAR}"
    )


@functools.cache
def quantizer_versions(python: Path) -> dict[str, str]:
    """llm-compressor, compressed-tensors, transformers and torch versions of that environment."""
    proc = subprocess.run(
        [str(python), str(JOB_SCRIPT), "--versions"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(
            f"{python}: not a quantizer environment ({last}); recreate it with `make quantize-env`"
        )
    return json.loads(proc.stdout)


def compress(
    label: str,
    source: Path,
    source_sha256: str,
    recipe: list[dict[str, Any]],
    calibration: Path | None,
    calibration_chunks: int,
    n_ctx: int,
    seed: int,
    python: Path,
) -> Path:
    """The compressed-tensors checkpoint of ``source`` under ``recipe`` (built once, cached)."""
    calibration_text = calibration.read_bytes() if calibration is not None else b""
    versions = quantizer_versions(python)
    key = cache_key(
        input=source_sha256,
        method="llm_compressor/oneshot",
        recipe=recipe,
        calibration=hashlib.sha256(calibration_text).hexdigest() if calibration else None,
        chunks=calibration_chunks if calibration else None,
        n_ctx=n_ctx,
        seed=seed,
        versions=versions,
        version=JOB_VERSION,
    )
    target = cache_root() / "artifacts" / key / label
    log_path = target.with_name(f"{label}.oneshot.log")
    job = {
        "source": str(source),
        "recipe": recipe,
        "calibration": str(calibration) if calibration else None,
        "calibration_chunks": calibration_chunks,
        "n_ctx": n_ctx,
        "seed": seed,
    }
    modifiers = " + ".join(step["modifier"] for step in recipe)

    def build(partial: Path) -> None:
        with progress.step(
            f"{label}: llm-compressor {versions['llmcompressor']} oneshot ({modifiers}), "
            f"log in {log_path}"
        ):
            _run(python, {**job, "output": str(partial)}, log_path, label)

    return build_once(target, build)


def _run(python: Path, job: dict[str, Any], log_path: Path, label: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=8)
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            [str(python), str(JOB_SCRIPT), json.dumps(job)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip())
            if line.startswith("quantgate:"):
                progress.say(f"{label}: {line[len('quantgate:') :].strip()}")
    if proc.returncode != 0:
        last = next((t for t in reversed(tail) if t.strip()), "no output")
        raise ArtifactError(
            f"{label}: llm-compressor oneshot exited with {proc.returncode}: {last[-300:]} "
            f"(full log: {log_path})"
        )
