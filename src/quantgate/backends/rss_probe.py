"""Peak memory of a deployed model: ``peak_memory`` starts a child process (this module) that
loads an artifact with its backend as a deployment would, evaluates a 32-token prompt, and
prints its peak RSS and, for a model on a GPU, its peak VRAM. A child process, because the test
process holds several models at once.

Usage: python -m quantgate.backends.rss_probe '{"backend": ..., "artifact": {...}, "settings":
{...}}'
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from quantgate.errors import EvaluationError

if TYPE_CHECKING:
    from quantgate.artifacts.store import Artifact
    from quantgate.configuration.backend_settings import BackendSettings

PROMPT = "The quick brown fox jumps over the lazy dog. " * 3


def peak_memory(
    artifact: Artifact, settings: BackendSettings, backend: str = "llama_cpp"
) -> dict[str, float | None]:
    """Peak RSS (``peak_rss_mib``) and peak VRAM (``peak_vram_mib``, None on the CPU) of a
    fresh process that loads ``artifact`` with ``backend`` and evaluates a short prompt."""
    spec = {
        "backend": backend,
        "artifact": {
            "label": artifact.label,
            "path": str(artifact.path),
            "sha256": artifact.sha256,
            "notes": artifact.notes,
        },
        "settings": settings.model_dump(),
    }
    cmd = [sys.executable, "-m", "quantgate.backends.rss_probe", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EvaluationError(f"{artifact.label}: memory probe failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    from quantgate.artifacts.store import Artifact
    from quantgate.backends import backend_class
    from quantgate.configuration.backend_settings import settings_for

    spec = json.loads(argv[0])
    a = spec["artifact"]
    cls = backend_class(spec["backend"])
    settings = settings_for(spec["backend"], spec["settings"])
    on_gpu = settings.on_gpu
    cls.prepare_process(settings)  # llama.cpp: off AMX unless allowed, as the gate loads it
    used_before = device_memory_used() if on_gpu else None
    # the facts (info) are not needed to load: only the path, identity and load-time notes
    artifact = Artifact(a["label"], Path(a["path"]), a["sha256"], None, a["notes"])  # type: ignore[arg-type]
    tree_kib = cls.run_as_deployed(artifact, settings, PROMPT)
    rss_kib = tree_kib if tree_kib is not None else peak_rss_kib()
    vram = None
    if on_gpu:
        own = cls.peak_device_bytes()
        vram = (own if own is not None else _tree_vram_now(used_before)) / 2**20
    print(json.dumps({"peak_rss_mib": rss_kib / 1024, "peak_vram_mib": vram}))
    return 0


def _tree_vram_now(device_used_before: dict[int, int] | None) -> int:
    """GPU bytes this process tree holds now. llama.cpp and vLLM allocate their buffers
    (weights, KV cache) up front, so after a prompt this is the peak: read from NVML
    (nvidia-ml-py, in the gpu extra) for every process of the tree (vLLM runs the model in
    worker processes)."""
    processes, used_now = nvml_snapshot()
    return tree_vram_bytes(processes, process_tree(), used_now, device_used_before)


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


def _vm_hwm_kib(status: str) -> float | None:
    """The peak RSS (VmHWM, KiB) a /proc/<pid>/status file states, or None where it cannot
    be read (a process that ended meanwhile, a kernel thread)."""
    try:
        with open(status) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def tree_peak_rss_kib(pids: set[int]) -> float:
    """The sum of each process's peak RSS over ``pids``: a model served by worker processes
    (vLLM's engine core and workers) is resident there, not in the caller. An upper bound on
    the tree's joint peak (each process's peak need not coincide)."""
    return sum((_vm_hwm_kib(f"/proc/{pid}/status") or 0.0 for pid in pids), 0.0)


def peak_rss_kib() -> float:
    """Peak RSS of this process image.

    VmHWM belongs to the address space, which execve replaces; ru_maxrss does not reset on exec,
    so in a child forked from a big parent it reports the parent's RSS instead of ours.
    """
    own = _vm_hwm_kib("/proc/self/status")
    if own is not None:
        return own
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
