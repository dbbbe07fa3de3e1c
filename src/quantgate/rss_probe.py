"""Child process for quantgate.throughput.peak_memory: load an artifact with its backend,
evaluate a 32-token prompt, print the peak RSS and, for a model on a GPU, the peak VRAM.

Usage: python -m quantgate.rss_probe '{"backend": ..., "artifact": {...}, "settings": {...}}'
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

PROMPT = "The quick brown fox jumps over the lazy dog. " * 3


def main(argv: list[str]) -> int:
    from quantgate.artifacts import Artifact
    from quantgate.backends import backend_class
    from quantgate.registry import BackendSettings

    spec = json.loads(argv[0])
    a = spec["artifact"]
    used_before = device_memory_used() if on_gpu(spec["backend"], spec["settings"]) else None
    if spec["backend"] == "llama_cpp":
        # one context that keeps the last logits row only, as a deployment would (the gate's
        # backend keeps two contexts, one with every row's logits, for scoring)
        from llama_cpp import Llama

        settings = spec["settings"]
        llm = Llama(
            model_path=a["path"],
            n_ctx=settings["n_ctx"],
            n_threads=settings["n_threads"] or os.cpu_count() or 1,
            n_gpu_layers=settings["n_gpu_layers"],
            verbose=False,
        )
        llm.eval(llm.tokenize(PROMPT.encode())[:32])
        print(json.dumps(_peaks(spec, used_before)))
        return 0
    # the facts (info) are not needed to load: only the path, identity and load-time notes
    artifact = Artifact(a["label"], Path(a["path"]), a["sha256"], None, a["notes"])  # type: ignore[arg-type]
    backend = backend_class(spec["backend"])(artifact, BackendSettings(**spec["settings"]))
    backend.process_prompt(backend.tokenize(PROMPT)[:32])
    print(json.dumps(_peaks(spec, used_before)))
    return 0


def _peaks(spec: dict, used_before: dict[int, int] | None) -> dict[str, float | None]:
    return {
        "peak_rss_mib": peak_rss_kib() / 1024,
        "peak_vram_mib": peak_vram_mib(spec, used_before),
    }


def on_gpu(backend: str, settings: dict) -> bool:
    # the rule of ModelEntry.on_gpu, on the plain dict this child process receives
    if backend == "llama_cpp":
        return settings.get("n_gpu_layers", 0) != 0
    return backend == "vllm" or settings.get("device", "cpu") != "cpu"


def peak_vram_mib(spec: dict, device_used_before: dict[int, int] | None = None) -> float | None:
    """Peak GPU memory of this process and its children; None for a model on the CPU.

    transformers: torch's peak reserved memory (what its allocator held from the driver).
    llama.cpp and vLLM allocate their buffers (weights, KV cache) up front, so the memory held
    after a prompt is the peak: read from NVML (nvidia-ml-py, in the gpu extra) for every
    process of this process's tree (vLLM runs the model in worker processes).
    """
    if not on_gpu(spec["backend"], spec["settings"]):
        return None
    if spec["backend"] == "transformers":
        import torch

        return torch.cuda.max_memory_reserved() / 2**20
    processes, used_now = nvml_snapshot()
    return tree_vram_bytes(processes, process_tree(), used_now, device_used_before) / 2**20


def nvml_snapshot() -> tuple[list[tuple[int, int]], dict[int, int]]:
    """NVML's (pid, bytes) of every compute process on every GPU, and each GPU's used bytes.

    Raises:
        ImportError: nvidia-ml-py is not installed (the gpu extra installs it).
    """
    import pynvml

    pynvml.nvmlInit()
    try:
        processes, used = [], {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            processes += [
                (p.pid, p.usedGpuMemory or 0)
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            ]
            used[index] = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        return processes, used
    finally:
        pynvml.nvmlShutdown()


def process_tree(pid: int | None = None) -> set[int]:
    """``pid`` (default: this process) and every descendant."""
    import psutil

    root = psutil.Process(pid)
    return {root.pid, *(c.pid for c in root.children(recursive=True))}


def tree_vram_bytes(
    processes: list[tuple[int, int]],
    tree: set[int],
    used_now: dict[int, int],
    used_before: dict[int, int] | None,
) -> int:
    """GPU bytes held by the processes of ``tree`` among NVML's (pid, bytes) list. In a
    container NVML reports the host's pids, which match none of ours: then the growth of
    each device's used memory since the probe started (``used_before``) is what we held."""
    mine = sum(used for pid, used in processes if pid in tree)
    if mine or not used_before:
        return mine
    return sum(max(0, used_now[i] - used_before.get(i, used_now[i])) for i in used_now)


def device_memory_used() -> dict[int, int] | None:
    """Used bytes per GPU now (before loading), None without NVML."""
    try:
        return nvml_snapshot()[1]
    except Exception:  # no nvidia-ml-py or no driver: a CPU machine
        return None


def peak_rss_kib() -> float:
    """Peak RSS of this process image.

    VmHWM belongs to the address space, which execve replaces; ru_maxrss does not reset on exec,
    so in a child forked from a big parent it reports the parent's RSS instead of ours.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
