"""The cache across processes: two processes build an entry once, and a process waiting on
another is counted."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from quantgate.artifacts.cache import build_once

# a hang guard, not a timing: make test runs this tier at nice 19, beside the model tests
HANG = 600


def _slow_builder(target: str, log: str) -> None:
    def build(partial: Path) -> None:
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.5)
        partial.write_bytes(b"x" * 1000)

    build_once(Path(target), build)
    assert Path(target).read_bytes() == b"x" * 1000  # never a half-written file


def test_two_processes_build_once(tmp_path):
    target, log = tmp_path / "v.gguf", tmp_path / "log"
    procs = [
        mp.get_context("spawn").Process(target=_slow_builder, args=(str(target), str(log)))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(HANG)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text() == "built\n"


def _section(kind: str, path: str) -> contextlib.AbstractContextManager[None]:
    """What a worker holds: a cached result's build lock, or the machine lock (shared by an
    ordinary test, exclusive for a timed one: quantgate.quiet)."""
    from quantgate.artifacts.cache import locked
    from quantgate.quiet import MachineLock

    if kind == "build":
        return locked(Path(path))
    lock = MachineLock(Path(path))
    return lock.shared() if kind == "test" else lock.exclusive()


def _hold(kind: str, path: str, ready: str, release: str) -> None:
    with _section(kind, path):
        Path(ready).write_text("held")
        while not Path(release).exists():
            time.sleep(0.05)


def _wait_for(kind: str, path: str) -> None:
    with _section(kind, path):
        pass


@pytest.mark.parametrize(
    ("held", "awaited"),
    [
        # a worker waiting for the baseline another computes: the computing one takes its cores
        ("build", "build"),
        # a timed test waiting for the running tests to end: they take its cores meanwhile
        ("test", "timed"),
    ],
)
def test_a_process_waiting_on_another_is_counted(tmp_path, monkeypatch, held, awaited):
    """Under xdist a worker that waits lends its cores (quantgate.quiet.evaluation_threads):
    the wait must be visible while it lasts, and end with it."""
    from quantgate.artifacts.cache import waiting_processes

    monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path / "cache"))
    target, ready, release = tmp_path / "t", tmp_path / "ready", tmp_path / "release"
    ctx = mp.get_context("spawn")
    holder = ctx.Process(target=_hold, args=(held, str(target), str(ready), str(release)))
    holder.start()
    deadline = time.monotonic() + HANG
    while not ready.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert waiting_processes() == 0
    waiter = ctx.Process(target=_wait_for, args=(awaited, str(target)))
    waiter.start()
    while waiting_processes() != 1:
        assert time.monotonic() < deadline, "the waiter never showed as waiting"
        time.sleep(0.05)
    assert waiter.is_alive()  # it really waits: no timing beside a running test
    release.write_text("go")
    holder.join(HANG)
    waiter.join(HANG)
    assert waiter.exitcode == 0 and waiting_processes() == 0
