"""The pytest plugin object that gathers every test's summary rows and writes reports/
summary.json after each judging test, and summary.md/.html at the session's end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quantgate.configuration.registry import QScoreWeights
from quantgate.report.render import write_reports
from quantgate.report.rows import ROW_PROPERTY, bracket_of, write_summary


def underpowered_lines(rows: list[dict]) -> list[str]:
    """``UNDERPOWERED pair metric: detects >= X (80 % power), bound <= T (origin, mode)``, one
    per underpowered summary row, in the order the summary sorts rows."""
    out = []
    for r in sorted(rows, key=lambda r: (r["pair"], r["metric"])):
        if not r.get("underpowered"):
            continue
        sign = ">=" if r.get("direction") == "min" else "<="
        out.append(
            f"UNDERPOWERED {r['pair']} {r['metric']}: the smallest loss it detects (80 % power) "
            f"is {r['minimum_detectable']:.3g}, bound {sign} {r['threshold']:g} "
            f"({r['threshold_origin']}, mode {r['mode']})"
        )
    return out


class SummaryCollector:
    """Gathers the summary rows of every test report and writes reports/summary.json, .md and
    .html.

    Registered on the controller only: under pytest-xdist the workers' reports (with their
    user_properties) arrive here too, so serial and parallel runs write the same file.
    """

    def __init__(
        self,
        folder: Path,
        weights: QScoreWeights,
        previous: list[dict] | None = None,
        machine: dict[str, Any] | None = None,
        diagnose: Callable[[list[dict]], list[Any]] | None = None,
    ) -> None:
        self.folder = folder
        #: --diagnose: rows -> the failed pairs' diagnoses (quantgate.diagnose), for the page
        self.diagnose = diagnose
        self.weights = weights
        self.previous = previous
        #: where this run's verdicts are made (quantgate.night.machine.machine_record)
        self.machines = {"": machine} if machine else {}
        self.rows: list[dict] = []
        #: wall time of every test of a pair (setup, call, teardown), summed
        self.wall: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        new_rows = []
        if report.when == "call":
            new_rows = [json.loads(v) for k, v in report.user_properties if k == ROW_PROPERTY]
            self.rows += new_rows
        # the bracket of the test id, wherever its file lives; write_summary credits it to the
        # judged pair id it starts with and drops one that names none
        pair = bracket_of(report.nodeid)
        if pair is not None:
            self.wall[pair] = self.wall.get(pair, 0.0) + report.duration
        if new_rows:
            # summary.json after every test that judged something: a run killed at a CI
            # timeout keeps every finished pair's rows (python -m quantgate.report
            # renders summary.md/html from them)
            write_summary(self.folder / "summary.json", self.rows, self.wall, self.machines)

    def pytest_sessionfinish(self) -> None:
        if self.rows:
            doc = write_summary(self.folder / "summary.json", self.rows, self.wall, self.machines)
            diagnoses = self.diagnose(doc["rows"]) if self.diagnose else []
            write_reports(
                self.folder,
                doc["rows"],
                self.weights,
                doc["created"],
                self.previous,
                doc["wall_seconds"],
                self.machines,
                diagnoses,
            )

    @pytest.hookimpl(trylast=True)  # after pytest-benchmark's table, before the short summary
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Every underpowered gate in one block beside pytest's short test summary (their rows
        also say so in summary.md/.html): a newcomer's first screen, not a wall of warnings."""
        lines = underpowered_lines(self.rows)
        if not lines:
            return
        terminalreporter.write_sep("=", f"{len(lines)} underpowered gates", yellow=True)
        for line in lines:
            terminalreporter.write_line(line)
        terminalreporter.write_line(
            "Their samples cannot see a loss of twice their bound, so their verdicts say "
            "little: raise the benchmark's limit, gate a graded metric (choice_kld_, Dgold_), "
            "or raise the threshold; --underpowered=error makes them errors."
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list) -> None:
        # pytest-html's report links to the study-style summary beside it
        prefix.append(
            '<p>quantgate: tables and plots per model in <a href="summary.html">summary.html</a>'
            ' (markdown: <a href="summary.md">summary.md</a>, data: '
            '<a href="summary.json">summary.json</a>).</p>'
        )
