"""One verdict from the shards of a night: ``python -m quantgate.night.merge OUT DIR...`` joins the
reports folders of ``pytest --shard K/N`` runs into OUT: summary.json (and summary.md/html from
it), junit.xml (junitparser) and benchmark.json (pytest-benchmark's, the shards' benchmarks
together).

It exits non-zero, saying why, when a shard is missing (naming the pairs it held), when a pair
of a present shard has no result (a shard killed midway: rerun it, it resumes from the cache),
when the shards disagree on the split (they ran different selections), or when any test of any
shard failed or errored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from quantgate.artifacts.cache import write_text_atomic
from quantgate.errors import ConfigError
from quantgate.night.shards import BASELINES_SUFFIX, NOISE_FLOOR_SUFFIX, SHARD_FILE
from quantgate.report.rows import bracket_of, junit_outcomes, write_summary


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the shard's {what} ({exc})") from None


def merge(
    out: Path, folders: list[Path], registry: Path | None = None, compare: Path | None = None
) -> list[str]:
    """Write the merged reports to ``out``; return the problems (empty: one green night).
    ``compare``: an earlier summary.json, whose changed values the tables list.

    Raises:
        ConfigError: a folder that is not a shard's reports (no shard.json), or shards that
            split different selections.
    """
    from quantgate.report.changes import load_previous

    previous = load_previous(compare) if compare else None  # a bad one: before any writing
    manifests = {}
    for folder in folders:
        if not (folder / SHARD_FILE).is_file():
            raise ConfigError(
                f"{folder}: no {SHARD_FILE}; pass the --reports-dir of a pytest --shard K/N run"
            )
        manifests[folder] = _read_json(folder / SHARD_FILE, SHARD_FILE)
    splits = {(m["of"], json.dumps(m["parts"])) for m in manifests.values()}
    if len(splits) != 1:
        raise ConfigError(
            "the shards split different selections (other --shard N, -m, -k or registry): "
            + ", ".join(f"{f} is {m['shard']}/{m['of']}" for f, m in manifests.items())
        )
    first = next(iter(manifests.values()))
    n, parts = first["of"], first["parts"]
    present = {m["shard"]: f for f, m in manifests.items()}
    problems = [
        f"shard {k}/{n} is missing: its pairs never ran: {', '.join(parts[k - 1]) or 'none'}"
        for k in range(1, n + 1)
        if k not in present
    ]
    rows: list[dict[str, Any]] = []
    wall: dict[str, float] = {}
    #: each shard's machine (a night across machines is several)
    machines: dict[str, dict[str, Any]] = {}
    benchmarks: dict[str, Any] | None = None
    from junitparser import JUnitXml

    junit = JUnitXml()
    for k, folder in sorted(present.items()):
        summary_path = folder / "summary.json"
        summary = _read_json(summary_path, "summary") if summary_path.is_file() else {}
        shard_rows = summary.get("rows", [])
        rows += shard_rows
        for record in summary.get("machines", {}).values():
            machines[f"shard {k}/{n}"] = record
        wall.update(summary.get("wall_seconds", {}))
        outcomes: dict[str, str] = {}
        if (folder / "junit.xml").is_file():
            junit += JUnitXml.fromfile(str(folder / "junit.xml"))
            outcomes = junit_outcomes(folder / "junit.xml")
            bad = [t for t, o in outcomes.items() if o in _FAILED]
            if bad:
                problems.append(f"shard {k}/{n}: {len(bad)} test(s) failed: {', '.join(bad)}")
        else:
            problems.append(f"shard {k}/{n} ({folder}): no junit.xml: the run did not finish")
        judged = {r["pair"] for r in shard_rows}
        unrun = [
            u
            for u in parts[k - 1]
            if u not in judged
            and not u.endswith(BASELINES_SUFFIX)
            and not _all_skipped(u, outcomes)
        ]
        if unrun:
            problems.append(
                f"shard {k}/{n} ({folder}): no result for {', '.join(unrun)}; rerun that shard "
                "(it resumes from the cache)"
            )
        bench_path = folder / "benchmark.json"
        if bench_path.is_file():
            doc = _read_json(bench_path, "benchmark.json")
            if benchmarks is None:
                benchmarks = {**doc, "benchmarks": []}
            benchmarks["benchmarks"] += doc.get("benchmarks", [])
    out.mkdir(parents=True, exist_ok=True)
    doc = write_summary(out / "summary.json", rows, wall, machines)
    junit.write(str(out / "junit.xml"))
    if benchmarks is not None:
        write_text_atomic(out / "benchmark.json", json.dumps(benchmarks, indent=2) + "\n")
    if rows:
        from quantgate.configuration.registry import QScoreWeights, load_registry
        from quantgate.report.render import write_reports

        weights = load_registry(registry).data.report.q_score if registry else QScoreWeights()
        write_reports(
            out, doc["rows"], weights, doc["created"], previous, doc["wall_seconds"], machines
        )
    return problems


#: junit_outcomes' words for a test that did not pass (a strict xfail is not one)
_FAILED = ("failed", "error")


def _all_skipped(unit: str, outcomes: dict[str, str]) -> bool:
    """Whether every test of ``unit`` was skipped (an entry this machine cannot run: its
    reason is in junit.xml), so its lack of rows is no missing result."""
    model = unit.removesuffix(NOISE_FLOOR_SUFFIX) if unit.endswith(NOISE_FLOOR_SUFFIX) else None
    mine = [
        o
        for name, o in outcomes.items()
        if (b := bracket_of(name)) is not None
        and (b == model if model else b == unit or b.startswith(unit + "-"))
    ]
    return bool(mine) and all(o == "skipped" for o in mine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quantgate.night.merge", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("out", type=Path, help="the merged reports folder")
    parser.add_argument("shards", type=Path, nargs="+", help="each shard's --reports-dir")
    parser.add_argument("--registry", type=Path, help="for the Q-score weights of the tables")
    parser.add_argument(
        "--compare", type=Path, help="an earlier summary.json: the tables list what changed"
    )
    args = parser.parse_args(argv)
    try:
        problems = merge(args.out, args.shards, args.registry, args.compare)
    except ConfigError as exc:
        print(f"quantgate merge: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"quantgate merge: {problem}", file=sys.stderr)
    print(f"quantgate merge: {args.out}: {len(args.shards)} shard(s) merged")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
