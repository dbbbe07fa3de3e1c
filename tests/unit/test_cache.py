"""The cache in one process: a failed build leaves nothing, keys carry what changes a result
(library versions and llama.cpp's build), an unwritable cache is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantgate.artifacts.cache import build_once, cache_key, cache_root, sha256_file
from quantgate.errors import QuantgateError


def test_failed_build_leaves_nothing_and_is_retried(tmp_path):
    target = tmp_path / "a" / "model.gguf"

    def broken(partial: Path) -> None:
        partial.write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        build_once(target, broken)
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if ".partial-" in p.name]
    build_once(target, lambda partial: partial.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole"


def test_builder_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(QuantgateError, match="produced no file"):
        build_once(tmp_path / "x", lambda partial: None)


def test_sha256_sidecar_tracks_changes(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    f.write_bytes(b"abcd")  # size changes: the sidecar is stale and ignored
    assert sha256_file(f) == "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"


def test_cache_key_is_order_independent_and_sensitive():
    assert cache_key(a=1, b="x") == cache_key(b="x", a=1)
    assert cache_key(a=1, b="x") != cache_key(a=2, b="x")


def test_unwritable_cache_dir_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("QUANTGATE_CACHE", str(blocker / "cache"))
    with pytest.raises(QuantgateError, match=r"is not writable .* set QUANTGATE_CACHE"):
        cache_root()


def _key(backend: str) -> str:
    from quantgate.backends.base import result_settings
    from quantgate.configuration.backend_settings import settings_for

    return cache_key(**result_settings(backend, settings_for(backend)))


@pytest.mark.parametrize(
    ("backend", "library"),
    [
        ("llama_cpp", "llama_cpp_python"),
        ("transformers", "transformers"),
        ("transformers", "torch"),
        ("transformers", "bitsandbytes"),
        ("transformers", "optimum-quanto"),
        ("transformers", "compressed-tensors"),
        ("vllm", "vllm"),
        ("vllm", "torch"),
    ],
)
def test_a_library_upgrade_misses_the_cache(monkeypatch, backend, library):
    """A cached result must not survive an upgrade of what computed it: a gate whose cache
    hides a library regression hides what it exists to catch."""
    from quantgate import versions

    before = _key(backend)
    real = versions.distribution_version
    monkeypatch.setattr(
        versions, "distribution_version", lambda n: "99.0" if n == library else real(n)
    )
    assert _key(backend) != before


def test_a_backend_key_carries_its_own_libraries_only(monkeypatch):
    from quantgate import versions

    before = _key("transformers")
    real = versions.distribution_version
    monkeypatch.setattr(
        versions, "distribution_version", lambda n: "99.0" if n == "llama_cpp_python" else real(n)
    )
    assert _key("transformers") == before  # llama.cpp moved: transformers results still valid
    assert "torch" not in versions.backend_versions("llama_cpp")


def test_a_llama_cpp_build_change_misses_the_cache(monkeypatch):
    from quantgate import versions

    before = _key("llama_cpp")
    assert "gpu_offload" in versions.llama_cpp_build()
    monkeypatch.setattr(versions, "llama_cpp_build", lambda: "CUDA : ARCHS = 900 | gpu_offload = 1")
    assert _key("llama_cpp") != before
