"""Progress lines for long steps (downloads, quantizing, evaluation).

The pytest plugin points ``sink`` at the terminal with capture suspended; outside pytest the
lines go to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Sink = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


sink: Sink = _stderr


def say(message: str) -> None:
    sink(f"[quantgate] {message}")


@contextmanager
def step(message: str) -> Iterator[None]:
    """Announce a long step, then its wall time (or that it failed)."""
    say(f"{message} ...")
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        say(f"{message}: failed after {time.perf_counter() - start:.1f} s")
        raise
    say(f"{message}: done in {time.perf_counter() - start:.1f} s")
