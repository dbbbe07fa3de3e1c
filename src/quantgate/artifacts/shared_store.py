"""A shared store behind the local cache: artifacts, downloads and scored results named by URL.

``QUANTGATE_STORE`` (or ``--store``) names it: a local or network filesystem path, or object
storage through fsspec (``s3://bucket/prefix`` with s3fs, ``gs://`` with gcsfs). The local
cache stays in front of it: an entry is looked for locally, then in the store (and copied
down), and only then computed, after which it is published. So no shard of a night
re-downloads a checkpoint or recomputes a baseline that another job already stored, and a
rerun of a killed shard starts from what the store holds.

Publishing never shows a half-written entry:

- a file on a filesystem store is written beside its name and renamed into place;
- a file on an object store is one PUT (or a multipart upload, visible only once completed),
  conditional on S3 (``If-None-Match: *``): the first of two jobs computing the same entry
  wins, and the second keeps the first's;
- a directory (a transformers checkpoint) is its files, then a manifest listing them
  (``<key>.files.json``); a reader trusts only a directory whose manifest exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from quantgate import progress
from quantgate.errors import QuantgateError

STORE_ENV = "QUANTGATE_STORE"
MANIFEST_SUFFIX = ".files.json"
#: files of this machine's alone: sha256 sidecars are stamped with a local mtime, locks local
_LOCAL_ONLY = (".sha256", ".lock")
#: a transfer larger than this says so while it runs
_ANNOUNCE_BYTES = 64 << 20


class Store:
    """One shared store. Keys are relative posix paths (the local cache's layout)."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise QuantgateError(
                f"{STORE_ENV}={url}: {exc}; s3:// needs s3fs (pip install 'quantgate[store]'), "
                "gs:// needs gcsfs"
            ) from None
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.on_filesystem = "file" in protocols or "local" in protocols
        # S3's conditional put; gcsfs and the rest overwrite (one PUT is still atomic)
        self.exclusive = bool({"s3", "s3a"} & set(protocols))
        self.root = self.root.rstrip("/")

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _remote(self, key: str) -> str:
        return f"{self.root}/{key}"

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Any failure of the store's library, as one line naming the store and the entry."""
        try:
            yield
        except QuantgateError:
            raise
        except Exception as exc:  # botocore, aiohttp and gcsfs raise their own types
            raise QuantgateError(
                f"store {self.url}: cannot {what}: {type(exc).__name__}: {exc}; check "
                f"{STORE_ENV}, the credentials and the endpoint (AWS_ENDPOINT_URL for S3 APIs)"
            ) from None

    def check(self) -> None:
        """Fail now, with one line, if the store cannot be written (before any test runs)."""
        probe = self._remote(f".probe-{uuid.uuid4().hex}")
        with self._errors("write a probe file"):
            self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)

    # -- reading -------------------------------------------------------------------------------
    def _exists(self, remote: str) -> bool:
        self.fs.invalidate_cache(remote)  # another job may have published it since we looked
        return bool(self.fs.exists(remote))

    def _kind(self, key: str) -> str | None:
        """ "folder" (its manifest is written), "file", or None: absent, or a folder whose
        manifest is not written yet (its publisher is still uploading, or died)."""
        if self._exists(self._remote(key + MANIFEST_SUFFIX)):
            return "folder"
        remote = self._remote(key)
        return "file" if self._exists(remote) and not self.fs.isdir(remote) else None

    def has(self, key: str) -> bool:
        """Whether the store holds ``key`` whole (a file, or a directory with its manifest)."""
        with self._errors(f"look up {key}"):
            return self._kind(key) is not None

    def fetch(self, key: str, local: Path) -> bool:
        """Copy ``key`` down to ``local`` (renamed into place whole); False if not stored."""
        with self._errors(f"fetch {key}"):
            kind = self._kind(key)
            if kind == "folder":
                manifest = self._remote(key + MANIFEST_SUFFIX)
                self._download_folder(key, json.loads(self.fs.cat_file(manifest))["files"], local)
            elif kind == "file":
                self._download_file(self._remote(key), local, key)
            return kind is not None

    def _download_file(self, remote: str, local: Path, key: str) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(f"{local.name}.partial-{os.getpid()}")
        try:
            with _announced(f"store: fetch {key}", self.fs.size(remote)):
                self.fs.get_file(remote, str(partial))
            os.replace(partial, local)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

    def _download_folder(self, key: str, files: dict[str, int], local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(f"{local.name}.partial-{os.getpid()}")
        try:
            with _announced(f"store: fetch {key}/ ({len(files)} files)", sum(files.values())):
                for name, size in files.items():
                    out = partial / name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    self.fs.get_file(self._remote(f"{key}/{name}"), str(out))
                    if out.stat().st_size != size:
                        raise QuantgateError(
                            f"store {self.url}: {key}/{name} is {out.stat().st_size} bytes, its "
                            f"manifest says {size}; delete {key} from the store"
                        )
            os.replace(partial, local)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    # -- writing -------------------------------------------------------------------------------
    def publish(self, local: Path, key: str) -> None:
        """Store ``local`` (a file or a directory) under ``key``, never visible half-written."""
        with self._errors(f"publish {key}"):
            if local.is_dir():
                files = {
                    p.relative_to(local).as_posix(): p.stat().st_size
                    for p in sorted(local.rglob("*"))
                    if p.is_file() and not p.name.endswith(_LOCAL_ONLY)
                }
                with _announced(f"store: publish {key}/ ({len(files)} files)", sum(files.values())):
                    for name in files:
                        self._put(local / name, f"{key}/{name}", quiet=True)
                    manifest = json.dumps({"files": files}, indent=1).encode()
                    self._put_bytes(manifest, key + MANIFEST_SUFFIX)
            else:
                self._put(local, key)

    def _put(self, local: Path, key: str, quiet: bool = False) -> None:
        size = local.stat().st_size
        with _announced(f"store: publish {key}", 0 if quiet else size):
            self._write(key, lambda remote, **kw: self.fs.put_file(str(local), remote, **kw))

    def _put_bytes(self, data: bytes, key: str) -> None:
        self._write(key, lambda remote, **kw: self.fs.pipe_file(remote, data, **kw))

    def _write(self, key: str, put: Callable[..., object]) -> None:
        """``put(remote, **kw)`` so that ``key`` appears whole or not at all: beside its name
        then renamed on a filesystem; once, conditionally, on S3; one PUT elsewhere."""
        remote = self._remote(key)
        if self.on_filesystem:
            self.fs.makedirs(self.fs._parent(remote), exist_ok=True)
            partial = f"{remote}.partial-{uuid.uuid4().hex}"
            try:
                put(partial)
                self.fs.mv(partial, remote)  # a rename: atomic on one filesystem
            finally:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(partial)
        elif self.exclusive:
            with contextlib.suppress(FileExistsError):  # another job stored it first
                put(remote, mode="create")
        else:
            put(remote)

    def listing(self) -> list[str]:
        """Every key the store holds: files, and a directory by its own key once its manifest is
        written."""
        with self._errors("list its entries"):
            self.fs.invalidate_cache()
            found = self.fs.find(self.root)
        keys = [p[len(self.root) + 1 :] for p in found if ".partial-" not in p]
        folders = {k[: -len(MANIFEST_SUFFIX)] for k in keys if k.endswith(MANIFEST_SUFFIX)}
        files = {k for k in keys if not k.endswith(MANIFEST_SUFFIX)}
        return sorted(
            folders | {k for k in files if not any(k.startswith(f"{f}/") for f in folders)}
        )


@contextlib.contextmanager
def _announced(message: str, size: int) -> Iterator[None]:
    """A progress step for a transfer large enough to be noticed; silent for small ones."""
    if size < _ANNOUNCE_BYTES:
        yield
        return
    with progress.step(f"{message} ({size >> 20} MiB)"):
        yield


_STORES: dict[str, Store] = {}


def shared_store() -> Store | None:
    """The store ``QUANTGATE_STORE`` names, or None (the local cache alone: the default)."""
    url = os.environ.get(STORE_ENV, "").strip()
    if not url:
        return None
    if url not in _STORES:
        _STORES[url] = Store(url)
    return _STORES[url]
