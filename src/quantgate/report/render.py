"""Writing reports/summary.html and summary.md from the summary rows (quantgate.report.summary_md
and summary_html), and ``python -m quantgate.report`` for a run killed before its end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quantgate.configuration.registry import QScoreWeights
from quantgate.errors import ConfigError
from quantgate.night.machine import describe
from quantgate.report.changes import compare_rows, load_previous
from quantgate.report.summary_html import Section, render_html
from quantgate.report.summary_md import render_markdown
from quantgate.report.tables import (
    build_tables,
)


def write_reports(
    folder: Path,
    rows: list[dict[str, Any]],
    weights: QScoreWeights,
    created: str,
    previous: list[dict[str, Any]] | None = None,
    wall_seconds: dict[str, float] | None = None,
    machines: dict[str, dict[str, Any]] | None = None,
    sections: Sequence[Section] = (),
) -> None:
    """summary.html and summary.md next to summary.json (``wall_seconds``: its evaluation
    time per pair; ``machines``: where its verdicts were made, by run or shard; ``sections``:
    more of a model's, after its tables, such as --diagnose's)."""
    tables = build_tables(rows, weights, wall_seconds)
    changes = compare_rows(previous, rows) if previous is not None else None
    made_on = machine_lines(machines or {})
    markdown = render_markdown(tables, weights, changes, made_on)
    markdown += "".join(f"\n{s.markdown()}" for s in sections)
    (folder / "summary.md").write_text(markdown, "utf-8")
    (folder / "summary.html").write_text(
        render_html(tables, weights, changes, created, made_on, sections), "utf-8"
    )


def machine_lines(machines: dict[str, dict[str, Any]]) -> list[str]:
    """ "Made on ..." per run (one) or per shard (a merged night), for the top of the page."""
    return [
        f"Made on{' (' + run + ')' if run else ''}: {describe(record)}"
        + (
            f"; llama.cpp: {record['llama_cpp_system_info']}"
            if record.get("llama_cpp_system_info")
            else ""
        )
        for run, record in machines.items()
    ]


def main(argv: list[str] | None = None) -> int:
    """Render summary.md/html from a summary.json: the reports of a run that was killed before
    its end (every finished test's rows are in summary.json already)."""
    import argparse

    from quantgate.configuration.registry import load_registry

    parser = argparse.ArgumentParser(prog="python -m quantgate.report")
    parser.add_argument("folder", type=Path, help="the reports folder holding summary.json")
    parser.add_argument("--registry", type=Path, default=Path("fixtures/models.yaml"))
    parser.add_argument("--compare", type=Path, help="an earlier summary.json")
    args = parser.parse_args(argv)
    summary = args.folder / "summary.json"
    try:
        doc = json.loads(summary.read_text())
        weights = load_registry(args.registry.resolve()).data.report.q_score
        previous = load_previous(args.compare) if args.compare else None
    except (OSError, ValueError, ConfigError) as exc:
        print(f"{summary}: cannot render reports: {exc}")
        return 2
    write_reports(
        args.folder,
        doc["rows"],
        weights,
        doc["created"],
        previous,
        doc.get("wall_seconds"),
        doc.get("machines"),
    )
    print(f"{args.folder}: summary.md and summary.html from {len(doc['rows'])} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
