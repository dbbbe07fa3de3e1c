"""GGUF checks before llama.cpp sees a file: bad magic, truncation, missing file."""

from __future__ import annotations

import pytest

from quantgate.artifacts.gguf_file import inspect_gguf
from quantgate.errors import ArtifactError

pytestmark = pytest.mark.real_model


def test_real_variant_facts(smollm2_artifacts):
    baseline, q2k = smollm2_artifacts
    assert baseline.info.architecture == "llama" and baseline.info.n_layers == 30
    assert baseline.info.n_params == q2k.info.n_params > 100_000_000
    assert 15.9 < baseline.info.bits_per_weight < 16.1  # F16 (norms stay F32)
    assert q2k.info.bits_per_weight < 6


@pytest.mark.parametrize(
    "keep",
    [
        # cut inside the tensor data: the header parses, a tensor runs past the end
        0.5,
        # cut inside the header
        0.00001,
    ],
)
def test_truncated_gguf_is_named(smollm2_artifacts, tmp_path, keep):
    _, q2k = smollm2_artifacts
    data = q2k.path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ArtifactError, match=r"smollm2-cut: .*cut\.gguf is truncated"):
        inspect_gguf(cut, "smollm2-cut")


def test_not_a_gguf(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"\x00\x01junk")
    with pytest.raises(ArtifactError, match=r"is not a GGUF file \(magic b'\\x00\\x01ju'"):
        inspect_gguf(f, "m")


def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="m: file not found"):
        inspect_gguf(tmp_path / "none.gguf", "m")


def test_inspection_is_memoized_by_the_file_identity(smollm2_artifacts, tmp_path, monkeypatch):
    """Every pytest process (each xdist worker) inspects the files it runs: the facts are kept
    in the cache by path, size and mtime, so a second process reads them, and a file cut
    short under the same name is inspected afresh (and named as truncated)."""
    from quantgate.artifacts import store as artifacts

    monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path / "cache"))
    _, q2k = smollm2_artifacts
    data = q2k.path.read_bytes()
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(data)
    first = artifacts._inspected(copy, "copy")
    assert first == q2k.info.__class__(**{**q2k.info.__dict__, "path": copy})
    calls = []
    monkeypatch.setattr(artifacts, "inspect_gguf", lambda p, w: calls.append(p))
    assert artifacts._inspected(copy, "copy") == first and not calls  # read from the memo
    monkeypatch.undo()
    monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path / "cache"))
    copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"copy\.gguf is truncated"):
        artifacts._inspected(copy, "copy")
