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
sdist's own ggml is built. Likewise libllama and libllama-common: the ones llama-cpp-python
installed (built from this very sdist) are linked instead of compiled again (200 of the
build's 230 s on 2 cores), unless the sdist's CMake files are not laid out as expected or that
build fails; then the sdist's own are built.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from quantgate import progress
from quantgate.artifacts.cache import cache_root, locked
from quantgate.artifacts.llama_quantizer import llama_cpp_version
from quantgate.errors import ToolError
from quantgate.night.machine import available_cores

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
                    f"sdist ({exc}{_first_error(exc)}); install cmake and a C++ compiler, or "
                    "point QUANTGATE_LLAMA_BIN at a folder holding the tool"
                ) from None
    return binary


def _first_error(exc: Exception) -> str:
    """cmake's or the compiler's first error line, where the failure kept its output."""
    lines = (getattr(exc, "stderr", None) or "").splitlines()
    errors = [line.strip() for line in lines if "error" in line.lower()]
    return f": {errors[0]}" if errors else ""


def installed_ggml() -> Path | None:
    """The cmake package of the ggml llama-cpp-python installed (``<site-packages>/lib/cmake/
    ggml``, beside its shared libraries), or None where the install has none."""
    import llama_cpp

    folder = Path(llama_cpp.__file__).resolve().parent.parent / "lib" / "cmake" / "ggml"
    return folder if (folder / "ggml-config.cmake").is_file() else None


def installed_llama() -> Path | None:
    """The libllama llama-cpp-python installed beside that ggml (``<site-packages>/lib``, the
    same file as ``llama_cpp/lib``'s: one folder on the tools' runtime path), or None."""
    ggml = installed_ggml()
    lib = ggml.parent.parent / "libllama.so" if ggml else None
    return lib if lib is not None and lib.is_file() else None


#: what replaces the sdist's src/CMakeLists.txt: the installed libllama as the target ``llama``
_IMPORTED_LLAMA = """# quantgate.artifacts.llama_tools: llama-cpp-python's libllama, not built again
add_library(llama SHARED IMPORTED GLOBAL)
set_target_properties(llama PROPERTIES
    IMPORTED_LOCATION "{lib}"
    INTERFACE_INCLUDE_DIRECTORIES "${{CMAKE_CURRENT_SOURCE_DIR}}/../include"
    INTERFACE_LINK_LIBRARIES ggml)
"""
#: what replaces ``add_subdirectory(common)``: the installed libllama-common (its build info
#: included) as ``llama-common``, with the headers and the interface the sdist's target has
_IMPORTED_COMMON = """    # quantgate.artifacts.llama_tools: llama-cpp-python's libllama-common
    find_package(Threads REQUIRED)
    add_library(llama-common SHARED IMPORTED GLOBAL)
    set_target_properties(llama-common PROPERTIES
        IMPORTED_LOCATION "{lib}"
        INTERFACE_INCLUDE_DIRECTORIES "${{CMAKE_CURRENT_SOURCE_DIR}}/common"
        INTERFACE_LINK_LIBRARIES "llama;vendor::nlohmann;vendor::sheredom;Threads::Threads"
        INTERFACE_COMPILE_FEATURES cxx_std_17)
"""
#: the lines of the sdist's top-level CMakeLists.txt each swap replaces (each exactly once);
#: an imported target cannot be installed, and nothing is installed from this build
_SWAPS = {
    "libllama": {"install(TARGETS llama LIBRARY PUBLIC_HEADER)\n": "\n"},
    "libllama-common": {
        "    add_subdirectory(common)\n": _IMPORTED_COMMON,
        "    install(TARGETS llama-common LIBRARY)\n": "\n",
    },
}


def _import_installed_llama(src: Path) -> list[str]:
    """Make the sdist's build link the libraries llama-cpp-python installed (libllama, then
    libllama-common, each where the CMake lines it replaces are the ones it was written for);
    returns their names, empty (nothing changed) where there is no installed libllama (or
    ggml is the sdist's own: installed_llama looks beside the installed ggml)."""
    lib = installed_llama()
    if lib is None:
        return []
    top = src / "CMakeLists.txt"
    text, imported = top.read_text(), []
    for name, lines in _SWAPS.items():
        library = lib.parent / f"{name}.so"
        if not library.is_file() or any(text.count(old) != 1 for old in lines):
            break  # libllama-common only with libllama: it links the libllama it was built with
        for old, new in lines.items():
            text = text.replace(old, new.format(lib=library))
        imported.append(name)
    if imported:
        top.write_text(text)
        (src / "src" / "CMakeLists.txt").write_text(_IMPORTED_LLAMA.format(lib=lib))
    return imported


#: the installed libllama-common has no runpath of its own: an old-style RPATH on the tools
#: (searched for every library they load, where a RUNPATH serves only their own) finds its ggml
_OLD_STYLE_RPATH = [
    f"-DCMAKE_{kind}_LINKER_FLAGS=-Wl,--disable-new-dtags" for kind in ("EXE", "SHARED")
]


def _cmake(src: Path, out: Path, version: str, what: str, extra: Sequence[str] = ()) -> None:
    """Configure and build the tools; ``what`` names the libllama it links, for the progress."""
    ggml = installed_ggml()
    system_ggml = ["-DLLAMA_USE_SYSTEM_GGML=ON", f"-Dggml_DIR={ggml}"] if ggml else []
    # an older build (fewer tools, or another libllama) was configured from another temporary
    # source folder, which cmake refuses to reuse
    shutil.rmtree(out, ignore_errors=True)
    step = f"cmake build {', '.join(TOOLS)} (llama.cpp from the {version} sdist, {what})"
    configure = ["cmake", "-S", str(src), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release",
                 "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF",
                 *system_ggml, *extra]  # fmt: skip
    build = ["cmake", "--build", str(out), "-j", str(available_cores()), "--target", *TOOLS]
    with progress.step(step):
        for command in (configure, build):
            # cmake's own warnings (a runtime path through two folders that hold the same
            # ggml) are shown only with a failure, which names them
            done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if done.returncode:
                tail = done.stderr.decode(errors="replace")[-3000:]
                raise subprocess.CalledProcessError(done.returncode, command[:2], stderr=tail)
        for name in TOOLS:  # each one loads: its libraries are all found
            done = subprocess.run([str(out / "bin" / name), "--help"], capture_output=True)
            if b"error while loading shared libraries" in done.stderr:
                tail = done.stderr.decode(errors="replace")
                raise subprocess.CalledProcessError(done.returncode, [name], stderr=tail)


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
        pristine = (
            (src / "CMakeLists.txt").read_text(),
            (src / "src" / "CMakeLists.txt").read_text(),
        )
        if imported := _import_installed_llama(src):
            try:
                linking = f"linking llama-cpp-python's {' and '.join(imported)}"
                _cmake(src, out, version, linking, _OLD_STYLE_RPATH)
                return
            except subprocess.CalledProcessError:
                # a libllama that lacks a symbol the tools use: build the sdist's own
                (src / "CMakeLists.txt").write_text(pristine[0])
                (src / "src" / "CMakeLists.txt").write_text(pristine[1])
        _cmake(src, out, version, "its own libllama")


def main() -> int:
    """``python -m quantgate.artifacts.llama_tools``: find or build every tool now (``make tools``),
    so a test run that needs them does not wait for the build."""
    try:
        for name in TOOLS:
            print(f"{name}: {tool(name)}")
    except ToolError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
