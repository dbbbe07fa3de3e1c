"""``pytest -n N --dist loadgroup``: every test of one model runs on one worker, where its
baseline is loaded (and, on a GPU machine, on that worker's own GPUs).

pytest-xdist's own loadgroup appends ``@<group>`` to an item's ``_nodeid``; pytest 9 builds
node ids from a structured id and no longer reads that attribute, so the groups never reach
xdist's scheduler (seen with xdist 3.8 and pytest 9.2: a model's tests spread over both
workers). This scheduler groups the controller's node ids by the model their bracket names.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

from quantgate.report.rows import bracket_of


def model_of_nodeid(nodeid: str, model_keys: Iterable[str]) -> str | None:
    """The registry model a gate test's id names: its bracket is the model key (the noise
    floor) or starts with ``<model>-`` (a pair, maybe with a benchmark or workload suffix)."""
    if "]@" in nodeid:  # xdist's own group suffix, where pytest still honours it
        nodeid = nodeid.split("]@", 1)[0] + "]"
    bracket = bracket_of(nodeid)
    if bracket is None:
        return None
    for key in sorted(model_keys, key=len, reverse=True):
        if bracket == key or bracket.startswith(f"{key}-"):
            return key
    return None


class ModelGroupScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with one scope per model (a test of no model is its own)."""

    def __init__(
        self, config: pytest.Config, log: Producer | None = None, model_keys: Iterable[str] = ()
    ) -> None:
        super().__init__(config, log)
        self.model_keys = list(model_keys)

    def _split_scope(self, nodeid: str) -> str:
        return model_of_nodeid(nodeid, self.model_keys) or nodeid
