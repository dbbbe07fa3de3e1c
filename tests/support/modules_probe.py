"""A pytest plugin for child gate runs (``-p tests.support.modules_probe``): when the session ends
it writes every module the process imported, one per line, to the file named by
``$QUANTGATE_MODULES_PROBE``, so a test can check what a run paid to import."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def pytest_unconfigure(config) -> None:
    out = os.environ.get("QUANTGATE_MODULES_PROBE")
    if out:
        Path(out).write_text("\n".join(sorted(sys.modules)))
