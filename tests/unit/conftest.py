"""Helpers for the project's own tests: run the real gate in a child pytest and read its reports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# Everything here runs offline: without this, huggingface_hub retries an unreachable Hub for
# about a minute per file before giving up.
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@dataclass
class GateRun:
    returncode: int
    output: str
    reports: Path

    def outcomes(self) -> dict[str, str]:
        """JUnit testcase name -> passed / failed / error / xfailed / skipped."""
        from quantgate.report import junit_outcomes

        return junit_outcomes(self.reports / "junit.xml")

    def summary(self) -> dict[tuple[str, str], dict]:
        """(pair, metric) -> summary.json row."""
        doc = json.loads((self.reports / "summary.json").read_text())
        return {(r["pair"], r["metric"]): r for r in doc["rows"]}


def gate_command(*args: str, reports: Path) -> list[str]:
    """``pytest ARGS`` as a user would run the gate, reports to ``reports``."""
    # path options take the `--opt=PATH` form: pytest picks its rootdir from positional-looking
    # paths before plugins are loaded, so `--opt PATH` with an existing PATH would move it
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--reports-dir={reports}",
        *args,
    ]


def run_gate(
    *args: str, reports: Path, env: dict[str, str] | None = None, timeout: int = 1800
) -> GateRun:
    """Run ``gate_command(ARGS)`` in the repo, offline, and keep its output and reports."""
    proc = subprocess.run(
        gate_command(*args, reports=reports),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **OFFLINE, **(env or {})},
    )
    return GateRun(proc.returncode, proc.stdout + proc.stderr, reports)


def collected(run: GateRun) -> list[str]:
    """The test ids a ``--collect-only -q`` run printed."""
    return re.findall(r"^(tests/\S+::\S+)$", run.output, flags=re.M)


@pytest.fixture
def gate_run(tmp_path):
    def run(*args: str, **kw) -> GateRun:
        return run_gate(*args, reports=tmp_path / "reports", **kw)

    return run


@pytest.fixture
def registry_copy(tmp_path):
    """Write a registry derived from fixtures/models.yaml; returns its path.

    ``edit(doc)`` changes the parsed YAML; relative paths keep pointing into fixtures/.
    """

    def make(edit) -> Path:
        from quantgate.registry import with_absolute_paths

        fixtures = REPO / "fixtures"
        doc = with_absolute_paths(yaml.safe_load((fixtures / "models.yaml").read_text()), fixtures)
        edit(doc)
        path = tmp_path / "models.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return make


def with_retention_bounds(text: str) -> str:
    """A default.yaml text plus a D_<benchmark> bound for every benchmark of the shipped
    registry it lacks (thresholds/ requires one for each), for tests that write their own."""
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        return text
    registry = yaml.safe_load((REPO / "fixtures" / "models.yaml").read_text())
    benches = {b for m in registry["models"].values() for b in m.get("benchmarks") or {}}
    defaults = doc.setdefault("defaults", None) or {}
    doc["defaults"] = {**{f"D_{b}": 5.0 for b in sorted(benches)}, **defaults}
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture
def thresholds_copy(tmp_path):
    """A copy of thresholds/, with optional extra files {name: yaml text}."""

    def make(
        files: dict[str, str] | None = None,
        drop: tuple[str, ...] = (),
        defaults: dict[str, dict[str, object]] | None = None,
    ) -> Path:
        """``files``: whole files to write; ``defaults``: {file: {key: bound}} merged into a
        shipped file's ``defaults:`` (a benchmark a test adds needs its D_ bound)."""
        out = tmp_path / "thresholds"
        out.mkdir(exist_ok=True)
        for f in (REPO / "thresholds").glob("*.yaml"):
            if f.name not in drop:
                (out / f.name).write_text(f.read_text())
        for name, text in (files or {}).items():
            (out / name).write_text(text)
        for name, bounds in (defaults or {}).items():
            doc = yaml.safe_load((out / name).read_text()) or {}
            doc["defaults"] = {**(doc.get("defaults") or {}), **bounds}
            (out / name).write_text(yaml.safe_dump(doc, sort_keys=False))
        return out

    return make


@pytest.fixture(scope="session")
def smollm2_artifacts():
    """The real embedded default: its baseline and one variant, built (or read) from the cache."""
    from quantgate.artifacts import ArtifactStore
    from quantgate.registry import load_registry

    registry = load_registry(REPO / "fixtures" / "models.yaml")
    store = ArtifactStore(registry)
    pairs = {p.compression_name: p for p in registry.pairs(["smollm2"])}
    return store.baseline("smollm2"), store.variant(pairs["Q2_K"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tiers by cost: a test that runs the gate in a child pytest is marked ``child_pytest``
    (seconds each: a pytest start, and often the model). ``make test-quick`` runs the tests
    that neither load the model nor start a child pytest, for an edit loop."""
    for item in items:
        if "gate_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.child_pytest)
