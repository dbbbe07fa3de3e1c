"""Artifact sources: local paths, checksums, and the Hub (up to the download call; offline here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from quantgate import sources
from quantgate.errors import ArtifactError
from quantgate.registry import HubSource, Source, load_registry

from .conftest import REPO

SPEC = HubSource(
    repo="bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
    file="Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
    revision="0123abc",
)


@pytest.fixture
def registry():
    return load_registry(REPO / "fixtures" / "models.yaml")


def test_local_path_missing_names_entry_and_registry(registry, tmp_path):
    with pytest.raises(
        ArtifactError,
        match=r"models\.x\.baseline: file not found: .*nope\.gguf "
        r"\(from source\.path in .*models\.yaml\)",
    ):
        sources.fetch(Source(path=str(tmp_path / "nope.gguf")), registry, "models.x.baseline")


def test_local_path_sha256_mismatch(registry, tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    with pytest.raises(ArtifactError, match=r"sha256 mismatch .* expected 0{64}, got "):
        sources.fetch(Source(path=str(f), sha256="0" * 64), registry, "models.x")


def test_hub_download_is_called_with_the_pinned_revision(monkeypatch, tmp_path):
    monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path))
    calls = []
    import huggingface_hub

    def fake_download(**kwargs):
        calls.append(kwargs)
        return str(tmp_path / "downloaded.gguf")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert sources.fetch_hub_file(SPEC, "models.llama31").name == "downloaded.gguf"
    assert calls == [
        {
            "repo_id": SPEC.repo,
            "filename": SPEC.file,
            "revision": "0123abc",
            "cache_dir": str(tmp_path / "hf"),
        }
    ]


def test_hub_offline_is_a_clear_error(tmp_path):
    # A real call into huggingface_hub with HF_HUB_OFFLINE=1 (read at its import: a child
    # process) and an empty cache: the same path a user without network takes.
    code = (
        "from quantgate.registry import HubSource; from quantgate import sources\n"
        f"sources.fetch_hub_file(HubSource(repo={SPEC.repo!r}, file={SPEC.file!r}, "
        f"revision='main'), 'models.llama31.baseline')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "QUANTGATE_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0
    assert last.startswith(
        "quantgate.errors.ArtifactError: models.llama31.baseline: cannot "
        "fetch hf://bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/"
    )
    assert "HF_HUB_OFFLINE is set and the file is not in" in last
