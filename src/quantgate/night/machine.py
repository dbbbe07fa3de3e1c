"""The machine a run's verdicts were made on: the CPU's model and the feature flags that choose
kernels, cores, threads, llama.cpp's system info line and where it places weights, the GPUs.

The pytest header prints it; JUnit (testsuite properties), summary.json and the top of
summary.md/.html record it; ``python -m quantgate.night.merge`` keeps each shard's. A number that
differs between two machines is noise until shown otherwise: the record says which machine.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

#: CPU flags that choose llama.cpp's and torch's kernels (Linux names; ARM's are the
#: ``Features`` line's): a report lists these, not the ~100 flags a CPU has
KERNEL_FLAG = re.compile(
    r"^(sse3|ssse3|fma|f16c|avx|avx2|avx_vnni|avx512\w*|amx_\w+|"  # x86
    r"asimd|asimddp|asimdhp|sve|sve2|i8mm|bf16|sme|sme2)$"  # ARM (asimd is NEON)
)


@dataclass(frozen=True)
class CpuFacts:
    model: str
    arch: str
    #: every flag, as the kernel lists them
    flags: tuple[str, ...]
    #: logical CPUs this process may run on
    cores: int

    @property
    def kernel_flags(self) -> list[str]:
        return [f for f in self.flags if KERNEL_FLAG.match(f)]


def parse_cpuinfo(text: str) -> tuple[str, list[str]]:
    """The first processor's model name and feature flags in a /proc/cpuinfo text (x86:
    ``model name`` and ``flags``; ARM: ``Features``, with ``CPU part`` where it has no name)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or fields.get("Model") or ""
    if not model and "CPU part" in fields:
        model = f"ARM implementer {fields.get('CPU implementer', '?')} part {fields['CPU part']}"
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    return model, flags


@cache
def cpu_facts() -> CpuFacts:
    try:
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux
        model, flags = platform.processor(), []
    return CpuFacts(
        model or platform.processor() or "unknown",
        platform.machine(),
        tuple(flags),
        available_cores(),
    )


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's cpuset, ``taskset``),
    which ``os.cpu_count()`` ignores. "All cores", wherever a thread count is unset, means
    these: more threads than cores spin against each other in ggml's and torch's barriers."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@cache
def gpu_names() -> tuple[str, ...]:
    """The GPUs the driver lists (``nvidia-smi -L``), none without one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(
        line.split(":", 1)[1].split("(UUID")[0].strip()
        for line in out.splitlines()
        if line.startswith("GPU ")
    )


def machine_record(
    threads: int | None = None, backends: dict[str, str] | None = None
) -> dict[str, Any]:
    """What a verdict was made on. ``threads``: the run's ``--threads`` (None: each entry's
    own, all cores unless it sets n_threads); ``backends``: what the backends say of their
    build (llama.cpp's system info line and placement: quantgate.llama_placement)."""
    cpu = cpu_facts()
    return {
        "cpu": cpu.model,
        "arch": cpu.arch,
        "cpu_flags": cpu.kernel_flags,
        "cores": cpu.cores,
        "threads": threads if threads else f"all {cpu.cores} cores unless an entry sets n_threads",
        **(backends or {}),
        "gpus": list(gpu_names()),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def describe(record: dict[str, Any]) -> str:
    """One line: the CPU, its kernel flags, cores and threads, llama.cpp's placement, GPUs."""
    gpus = ", ".join(record.get("gpus") or []) or "no GPU"
    parts = [
        f"{record.get('cpu', '?')} ({record.get('arch', '?')})",
        f"{record.get('cores', '?')} cores",
        f"threads: {record.get('threads', '?')}",
        "flags: " + (" ".join(record.get("cpu_flags") or []) or "none listed"),
    ]
    if "llama_cpp_placement" in record:
        parts.append(f"llama.cpp weights: {record['llama_cpp_placement']}")
    parts.append(gpus)
    return "; ".join(parts)
