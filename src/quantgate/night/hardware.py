"""What the machine can run, decided at collection time: before any download or load.

A GPU entry asks for tensor_parallel_size x pipeline_parallel_size GPUs (at least one); an entry
that needs more than are present is skipped with needed/found in the reason. The count comes
from NVML (nvidia-ml-py, in the gpu extra) or ``nvidia-smi -L``, limited by
CUDA_VISIBLE_DEVICES; ``QUANTGATE_GPUS`` overrides it, for a Ray cluster whose GPUs are on
other nodes (vLLM's engine places the workers; this machine only drives it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

from quantgate.configuration.backend_settings import VllmSettings
from quantgate.configuration.registry import ModelEntry


def gpus_needed(entry: ModelEntry) -> int:
    """GPUs an entry's engine occupies: 0 on the CPU."""
    return entry.backend_settings.gpus if entry.on_gpu else 0


def _visible(physical: int) -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return physical
    ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    return min(len(ids), physical)


@cache
def _physical_gpus() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no nvidia-ml-py, no driver: ask nvidia-smi, else none
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def gpus_present() -> int:
    if (override := os.environ.get("QUANTGATE_GPUS")) is not None:
        try:
            return int(override)
        except ValueError:
            raise ValueError(
                f"QUANTGATE_GPUS={override!r}: expected the number of GPUs (an integer)"
            ) from None
    return _visible(_physical_gpus())


def gpu_skip_reason(model_key: str, entry: ModelEntry, present: int) -> str | None:
    """Why this machine cannot run the entry, or None."""
    needed = gpus_needed(entry)
    if needed <= present:
        return None
    s = entry.backend_settings
    layout = (
        f" (tensor_parallel_size {s.tensor_parallel_size} x pipeline_parallel_size "
        f"{s.pipeline_parallel_size})"
        if isinstance(s, VllmSettings) and needed > 1
        else ""
    )
    return (
        f"models.{model_key} needs {needed} GPU(s){layout}, found {present}"
        " (QUANTGATE_GPUS sets the count a Ray cluster offers)"
    )


def vllm_cpu_skip_reason(model_key: str, models: dict[str, ModelEntry]) -> str | None:
    """Why an entry served by vLLM's CPU backend cannot run in this environment (no vLLM
    installed: the gate's own .venv), or None. A GPU entry's reason is its GPUs'."""
    entry = models.get(model_key)
    if entry is None or entry.backend != "vllm" or entry.on_gpu:
        return None
    from quantgate.backends.vllm import BUILD_HINT, installed_version

    if installed_version() is not None:
        return None
    return (
        f"models.{model_key} runs on vLLM's CPU backend, not installed in this environment: "
        f"{BUILD_HINT['cpu']}"
    )


def llama_cpp_offload_problem(model_keys: list[str]) -> str | None:
    """One line if an entry asks llama.cpp to offload layers and the loaded llama.cpp cannot
    (a CPU wheel pip reused), else None."""
    if not model_keys:
        return None
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        return None
    return (
        f"models.{', '.join(model_keys)}: n_gpu_layers asks for GPU offload, but the installed "
        "llama-cpp-python was built without it; rebuild it with CUDA: "
        "CMAKE_ARGS=-DGGML_CUDA=on pip install --force-reinstall --no-cache-dir "
        "--no-binary llama-cpp-python llama-cpp-python (tox -e gpu does)"
    )


def gpu_ids() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (its list when set,
    else 0..count-1 of the physical ones)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    return [str(i) for i in range(_physical_gpus())]


def worker_gpus(worker: int, workers: int, ids: list[str]) -> list[str]:
    """The GPUs pytest-xdist worker ``worker`` (0-based) of ``workers`` owns: with at least as
    many GPUs as workers, its own share (round-robin: 8 GPUs, 4 workers, two each, so a
    tensor-parallel-2 entry still runs); with fewer, workers share them round-robin (the
    plugin warns: two engines on one GPU contend for its memory)."""
    if not ids:
        return []
    if len(ids) >= workers:
        return ids[worker::workers]
    return [ids[worker % len(ids)]]
