"""Helpers for the project's own tests: run the real gate in a child pytest and read its
reports, and write the threshold texts tests need. Imported by tests and by conftest.py (whose
fixtures wrap them); nothing here is a fixture."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


def verdict_rows(folder: Path) -> list[tuple]:
    """A reports folder's summary.json rows as sorted (pair, metric, value, verdict): what two
    runs of the same pairs must agree on."""
    doc = json.loads((folder / "summary.json").read_text())
    return sorted((r["pair"], r["metric"], r["value"], r["verdict"]) for r in doc["rows"])


class Request:
    """The part of lm-eval's Instance an lm-eval model reads."""

    def __init__(self, *args) -> None:
        self.args = args


def hellaswag_requests(n_items: int) -> list[Request]:
    """lm-eval's hellaswag loglikelihood requests for the first ``n_items`` validation items."""
    from lm_eval.tasks.hellaswag.utils import preprocess

    path = REPO / "fixtures" / "data" / "hellaswag" / "hellaswag_val_first100.jsonl"
    out = []
    for line in path.read_text().splitlines()[:n_items]:
        doc = json.loads(line)
        query = preprocess(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"])
        out += [Request(query, " " + preprocess(e)) for e in doc["endings"]]
    return out
