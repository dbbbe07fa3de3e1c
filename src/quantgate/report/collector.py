"""The pytest plugin object that gathers every test's summary rows and writes reports/
summary.json after each judging test, and summary.md/.html at the session's end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantgate.registry import QScoreWeights
from quantgate.report.render import write_reports
from quantgate.report.rows import ROW_PROPERTY, bracket_of, write_summary


class SummaryCollector:
    """Gathers the summary rows of every test report and writes reports/summary.json, .md and
    .html.

    Registered on the controller only: under pytest-xdist the workers' reports (with their
    user_properties) arrive here too, so serial and parallel runs write the same file.
    """

    def __init__(
        self, folder: Path, weights: QScoreWeights, previous: list[dict] | None = None
    ) -> None:
        self.folder = folder
        self.weights = weights
        self.previous = previous
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
            write_summary(self.folder / "summary.json", self.rows, self.wall)

    def pytest_sessionfinish(self) -> None:
        if self.rows:
            doc = write_summary(self.folder / "summary.json", self.rows, self.wall)
            write_reports(
                self.folder,
                doc["rows"],
                self.weights,
                doc["created"],
                self.previous,
                doc["wall_seconds"],
            )

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list) -> None:
        # pytest-html's report links to the study-style summary beside it
        prefix.append(
            '<p>quantgate: tables and plots per model in <a href="summary.html">summary.html</a>'
            ' (markdown: <a href="summary.md">summary.md</a>, data: '
            '<a href="summary.json">summary.json</a>).</p>'
        )
