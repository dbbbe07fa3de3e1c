"""llama_tools' build plan without building: the sdist's libllama swapped for the installed one
only where its CMake files are the ones that swap was written for, and a failed build's error
naming the compiler's first error. (The build itself: make tools, and the e2e tests that run
the tools.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from quantgate.artifacts import llama_tools

TOP = (
    "add_subdirectory(src)\n"
    "if (LLAMA_BUILD_COMMON)\n    add_subdirectory(common)\nendif()\n"
    "install(TARGETS llama LIBRARY PUBLIC_HEADER)\n"
    "if (LLAMA_BUILD_COMMON)\n    install(TARGETS llama-common LIBRARY)\nendif()\n"
)


def _sdist(tmp_path: Path, top: str = TOP) -> Path:
    (tmp_path / "src").mkdir(parents=True)
    (tmp_path / "CMakeLists.txt").write_text(top)
    (tmp_path / "src" / "CMakeLists.txt").write_text("add_library(llama llama.cpp)\n")
    return tmp_path


@pytest.fixture
def installed(monkeypatch, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    for name in ("libllama.so", "libllama-common.so"):
        (site / name).write_bytes(b"")
    monkeypatch.setattr(llama_tools, "installed_llama", lambda: site / "libllama.so")
    monkeypatch.setattr(llama_tools, "installed_ggml", lambda: site / "cmake" / "ggml")
    return site


def test_the_installed_libraries_replace_the_sdists(installed, tmp_path):
    src = _sdist(tmp_path / "sdist")
    assert llama_tools._import_installed_llama(src) == ["libllama", "libllama-common"]
    imported = (src / "src" / "CMakeLists.txt").read_text()
    assert "add_library(llama SHARED IMPORTED GLOBAL)" in imported
    assert f'IMPORTED_LOCATION "{installed / "libllama.so"}"' in imported
    assert "${CMAKE_CURRENT_SOURCE_DIR}/../include" in imported
    top = (src / "CMakeLists.txt").read_text()
    assert "install(TARGETS" not in top and "add_subdirectory(common)" not in top
    assert "add_library(llama-common SHARED IMPORTED GLOBAL)" in top
    assert f'IMPORTED_LOCATION "{installed / "libllama-common.so"}"' in top
    assert "${CMAKE_CURRENT_SOURCE_DIR}/common" in top


def test_without_an_installed_common_only_libllama_is_swapped(installed, tmp_path):
    (installed / "libllama-common.so").unlink()
    src = _sdist(tmp_path / "sdist")
    assert llama_tools._import_installed_llama(src) == ["libllama"]
    top = (src / "CMakeLists.txt").read_text()
    assert "    add_subdirectory(common)\n" in top and "install(TARGETS llama-common" in top


@pytest.mark.parametrize("top", ["add_subdirectory(src)\n", TOP + TOP], ids=["none", "two"])
def test_cmake_files_of_another_layout_are_left_alone(installed, tmp_path, top):
    src = _sdist(tmp_path / "sdist", top)
    assert llama_tools._import_installed_llama(src) == []
    assert (src / "CMakeLists.txt").read_text() == top
    assert (src / "src" / "CMakeLists.txt").read_text() == "add_library(llama llama.cpp)\n"


def test_without_an_installed_library_the_sdist_builds_its_own(monkeypatch, tmp_path):
    monkeypatch.setattr(llama_tools, "installed_llama", lambda: None)
    src = _sdist(tmp_path / "sdist")
    assert llama_tools._import_installed_llama(src) == []
    assert (src / "CMakeLists.txt").read_text() == TOP


def test_a_failed_build_names_the_first_error():
    exc = subprocess.CalledProcessError(
        2,
        ["cmake", "--build"],
        stderr="warning: x\n/src/a.cpp:3:1: error: 'foo' was not declared\nmake: Error 2\n",
    )
    assert llama_tools._first_error(exc) == ": /src/a.cpp:3:1: error: 'foo' was not declared"
    assert llama_tools._first_error(OSError("cmake: not found")) == ""
