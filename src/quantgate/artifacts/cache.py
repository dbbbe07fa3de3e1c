"""The on-disk cache: where artifacts and results live, keyed by what changes them.

Writers take a file lock and publish with an atomic rename, so two pytest-xdist workers never
build the same thing twice and nobody ever reads a half-written file. A failed build leaves
only a ``*.partial-*`` file, which is deleted and never reused.

With a shared store (quantgate.artifacts.shared_store, ``QUANTGATE_STORE``), this cache sits in
front of it: built files and scored results are looked for there before they are computed, and
published there once they are.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from quantgate.artifacts.shared_store import shared_store
from quantgate.errors import QuantgateError

CACHE_ENV = "QUANTGATE_CACHE"


def cache_root() -> Path:
    """``$QUANTGATE_CACHE``, or ``~/.cache/quantgate``; created on first use."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "quantgate").expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise QuantgateError(
            f"cache dir {root} is not writable ({exc.strerror}); set {CACHE_ENV} to a writable dir"
        ) from None
    return root


def cache_key(**parts: Any) -> str:
    """A short stable hash over everything that changes a cached result."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file, memoized in a sidecar keyed by size and mtime (large GGUFs hash once)."""
    stat = path.stat()
    sidecar = path.with_name(path.name + ".sha256")
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    if sidecar.exists():
        with contextlib.suppress(ValueError):
            saved_stamp, digest = sidecar.read_text().split()
            if saved_stamp == stamp:
                return digest
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    with contextlib.suppress(OSError):
        sidecar.write_text(f"{stamp} {digest}\n")
    return digest


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold an inter-process lock for building ``target``. While it waits for another
    process's build, the process says so (waiting_processes): the builder may then use the
    cores the waiter leaves idle."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target) + ".lock")
    try:
        lock.acquire(blocking=False)
    except Timeout:
        with waiting():
            lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _waiting_folder() -> Path:
    folder = cache_root() / "locks" / "waiting"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    """A file of this process's, held (flock) while it waits on another's work (a build, or a
    timed section's turn: quantgate.quiet)."""
    path = _waiting_folder() / f"{os.getpid()}.lock"
    with path.open("ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def waiting_processes() -> int:
    """How many processes sharing this cache are waiting on another's build right now (a held
    file; a stale one, left by a killed process, is not held and does not count)."""
    n = 0
    for path in _waiting_folder().glob("*.lock"):
        try:
            with path.open("rb") as f:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
        except BlockingIOError:
            n += 1
        except OSError:
            continue
    return n


def store_key(path: Path) -> str:
    """Where a file of this cache lives in the shared store: the same relative path."""
    try:
        return path.relative_to(cache_root()).as_posix()
    except ValueError:
        raise QuantgateError(f"{path} is not under the cache {cache_root()}") from None


def build_once(
    target: Path, build: Callable[[Path], None], companions: tuple[Path, ...] = ()
) -> Path:
    """Return ``target``, building it with ``build(partial_path)`` if it does not exist yet.

    ``build`` writes to the partial path (a file, or a directory); only a build that returns
    normally is renamed into place. Any exception removes the partial file, so a crash or a
    full disk is never reused. ``companions``: files the build writes beside the target (its
    metadata), which travel with it to and from the shared store; the target is published
    last, so a stored target means its companions are stored too.
    """
    if target.exists():
        return target
    with locked(target):
        if target.exists():  # another worker built it while we waited for the lock
            return target
        store = shared_store()
        if store is not None and store.has(store_key(target)):
            for path in (*companions, target):
                if not store.fetch(store_key(path), path):
                    raise QuantgateError(
                        f"store {store.url} holds {store_key(target)} without its "
                        f"{store_key(path)}; delete the entry from the store"
                    )
            return target
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        try:
            build(partial)
            if not partial.exists():
                raise QuantgateError(f"building {target.name} produced no file at {partial}")
            os.replace(partial, target)
        finally:
            if partial.is_dir():  # a directory artifact (a transformers checkpoint)
                shutil.rmtree(partial, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
        if store is not None:
            for path in (*companions, target):
                store.publish(path, store_key(path))
    return target


def read_result(path: Path) -> Any | None:
    """A scored result: from this cache, else from the shared store (copied down), else
    None (then it is computed, and written with write_result)."""
    doc = read_json(path)
    if doc is None and (store := shared_store()) is not None and store.fetch(store_key(path), path):
        doc = read_json(path)
    return doc


def write_result(path: Path, payload: Any) -> None:
    """Write a scored result to this cache and publish it to the shared store, if any."""
    write_json_atomic(path, payload)
    if (store := shared_store()) is not None:
        store.publish(path, store_key(path))


def read_json(path: Path) -> Any | None:
    """A cached JSON document, or None if absent or unreadable (then it is recomputed)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a partial file beside ``path`` and rename it into place: a reader
    (or another writer) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True))


#: what a cache holds that is the same bytes on every machine (downloads and built files)
SHARED_PARTS = ("sources", "artifacts")


def results_free_cache(folder: Path) -> Path:
    """A new cache under ``folder`` that shares this cache's downloads and built artifacts
    (symlinks) but holds no scored result: every number computed in it is computed afresh.
    For tests and benchmarks that must measure cold evaluation without rebuilding files."""
    root, fresh = cache_root(), folder / "cache"
    fresh.mkdir(parents=True)
    for part in SHARED_PARTS:
        (root / part).mkdir(exist_ok=True)
        (fresh / part).symlink_to(root / part)
    return fresh
