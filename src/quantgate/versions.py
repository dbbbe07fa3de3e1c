"""What a cached result's numbers depend on besides its inputs: the libraries that computed it,
and how llama.cpp was built. A cache that hides a library regression hides the one thing a
regression gate exists to catch, so every result key carries these for its backend (and only
its backend's: a transformers result must not miss because llama.cpp moved)."""

from __future__ import annotations

from functools import cache
from importlib import metadata

from quantgate.configuration.backend_settings import CATALOGUE


def distribution_version(name: str) -> str:
    """The installed version of a distribution, or "absent"."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


@cache
def llama_cpp_build() -> str:
    """How the loaded llama.cpp was built: its CPU feature line (the SIMD paths its kernels
    take, which order the sums) and whether it can offload to a GPU (a CUDA build)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    return f"{text.strip()} | gpu_offload = {int(bool(llama_cpp.llama_supports_gpu_offload()))}"


def backend_versions(backend: str) -> dict[str, str]:
    """Versions of everything that computes ``backend``'s numbers, for cache keys."""
    libraries = CATALOGUE[backend].libraries if backend in CATALOGUE else ()
    out = {name: distribution_version(name) for name in libraries}
    if backend == "llama_cpp":
        out["llama_cpp_build"] = llama_cpp_build()
    return out
