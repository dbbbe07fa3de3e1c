"""Timed sections run on a quiet machine: a machine-wide reader-writer lock over the suite's
own work.

Under pytest-xdist every test's call phase holds the lock shared, and a throughput test holds
it exclusive: its rounds start once the other workers' running tests have finished, and no
new test starts beside them (seen without it: with ``-n 2`` a neighbour's evaluation beside
the timed rounds read Q8_0's tg ratio as 0.27 where it is 1.1). Writer preference comes from
a turnstile: a waiting timer holds it, so new readers queue behind the timer instead of
starving it.

POSIX ``flock`` on two files in the cache folder: released by the kernel if a worker dies, so
a killed run never leaves the lock held. One process may nest shared sections.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from quantgate.artifacts.cache import cache_root, waiting, waiting_processes
from quantgate.night.machine import available_cores


class MachineLock:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._files: dict[str, IO[bytes]] = {}
        self._depth = 0

    def _file(self, name: str) -> IO[bytes]:
        if name not in self._files:
            folder = self.folder or cache_root() / "locks"
            folder.mkdir(parents=True, exist_ok=True)
            self._files[name] = (folder / f"{name}.lock").open("ab")
        return self._files[name]

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Ordinary work: many at once, never beside a timed section."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        turnstile, room = self._file("turnstile"), self._file("room")
        fcntl.flock(turnstile, fcntl.LOCK_SH)  # waits while a timer holds or awaits the room
        try:
            fcntl.flock(room, fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            fcntl.flock(room, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """A timed section: alone on the machine (as far as this suite goes)."""
        if self._depth:
            raise RuntimeError("a timed section inside a shared section would wait on itself")
        turnstile, room = self._file("turnstile"), self._file("room")
        # while it waits for the running tests to end, this worker's cores go to them
        with waiting():
            fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            with waiting():
                fcntl.flock(room, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(room, fcntl.LOCK_UN)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def xdist_workers() -> int:
    """How many pytest-xdist workers share this machine (1 outside xdist)."""
    try:
        return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        return 1


def evaluation_threads() -> int:
    """Threads for one evaluation call of an xdist worker whose thread count is not set: the
    cores shared among the workers that are computing now. A worker waiting for another's
    result (the baseline every pair needs) leaves its share to the one computing it: with a
    fixed share, the first baseline ran on half the machine while the other worker idled."""
    cores = available_cores()
    busy = max(1, xdist_workers() - waiting_processes())
    return max(1, cores // busy)
