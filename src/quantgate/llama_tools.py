"""Find or build llama.cpp's command-line tools: the importance-matrix path (llama-imatrix,
llama-quantize --imatrix) and the benchmarks' references (llama-perplexity, llama-bench).

Order: ``$QUANTGATE_LLAMA_BIN`` (a directory), then ``PATH``, then a build from the vendored
llama.cpp inside the llama-cpp-python sdist of the installed version, cached under
``$QUANTGATE_CACHE/tools`` (once; all four tools in one build). Building from the same sdist as
the in-process library means both run the same llama.cpp: an imatrix quantization made by the
tool is what llama_model_quantize would make given that matrix (its C API takes the matrix as a
C++ map, which Python cannot pass). The build links the ggml llama-cpp-python installed (its
wheel ships ggml's shared libraries and cmake package), so the tools run the very kernels the
in-process library runs, and ggml is not compiled twice; where that package is absent, the
sdist's own ggml is built.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from quantgate import progress
from quantgate.cache import cache_root, locked
from quantgate.errors import ToolError
from quantgate.quantize import llama_cpp_version

TOOLS = ("llama-imatrix", "llama-quantize", "llama-perplexity", "llama-bench")


def tool(name: str) -> Path:
    """Path to a llama.cpp tool, building it if needed.

    Raises:
        ToolError: the build failed (no cmake or C++ compiler, or no network for the sdist).
    """
    if env := os.environ.get("QUANTGATE_LLAMA_BIN"):
        candidate = Path(env) / name
        if candidate.is_file():
            return candidate
    if found := shutil.which(name):
        return Path(found)
    version = llama_cpp_version()
    ggml = installed_ggml()
    # linked to that ggml by path: a build per installation (another venv has its own)
    linked = f"-ggml-{hashlib.sha256(str(ggml).encode()).hexdigest()[:10]}" if ggml else ""
    build_dir = cache_root() / "tools" / f"llama.cpp-{version}{linked}"
    binary = build_dir / "build" / "bin" / name
    if binary.is_file():
        return binary
    with locked(build_dir):
        if not binary.is_file():
            try:
                _build(version, build_dir)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise ToolError(
                    f"could not build llama.cpp's {name} from the llama-cpp-python=={version} "
                    f"sdist ({exc}); install cmake and a C++ compiler, or point "
                    "QUANTGATE_LLAMA_BIN at a folder holding the tool"
                ) from None
    return binary


def installed_ggml() -> Path | None:
    """The cmake package of the ggml llama-cpp-python installed (``<site-packages>/lib/cmake/
    ggml``, beside its shared libraries), or None where the install has none."""
    import llama_cpp

    folder = Path(llama_cpp.__file__).resolve().parent.parent / "lib" / "cmake" / "ggml"
    return folder if (folder / "ggml-config.cmake").is_file() else None


def _build(version: str, build_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="quantgate-sdist-") as tmp:
        with progress.step(f"pip download llama-cpp-python=={version} sdist"):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    "-q",
                    "-d",
                    tmp,
                    f"llama-cpp-python=={version}",
                ],
                check=True,
            )
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = next(Path(tmp).glob("llama_cpp_python-*/vendor/llama.cpp"))
        build_dir.mkdir(parents=True, exist_ok=True)
        out = build_dir / "build"
        # an older build (fewer tools) was configured from another temporary source folder,
        # which cmake refuses to reuse
        shutil.rmtree(out, ignore_errors=True)
        ggml = installed_ggml()
        system_ggml = ["-DLLAMA_USE_SYSTEM_GGML=ON", f"-Dggml_DIR={ggml}"] if ggml else []
        with progress.step(f"cmake build {', '.join(TOOLS)} (llama.cpp from the {version} sdist)"):
            subprocess.run(
                [
                    "cmake",
                    "-S",
                    str(src),
                    "-B",
                    str(out),
                    "-DCMAKE_BUILD_TYPE=Release",
                    "-DLLAMA_CURL=OFF",
                    "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_SERVER=OFF",
                    *system_ggml,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            subprocess.run(
                ["cmake", "--build", str(out), "-j", str(os.cpu_count() or 1), "--target", *TOOLS],
                check=True,
                stdout=subprocess.DEVNULL,
            )


def main() -> int:
    """``python -m quantgate.llama_tools``: find or build every tool now (``make tools``), so a
    test run that needs them does not wait for the build."""
    try:
        for name in TOOLS:
            print(f"{name}: {tool(name)}")
    except ToolError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
