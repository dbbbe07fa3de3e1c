"""What a night costs at full scale, from a measured quick run of it.

    pytest -m nightly --model llama31 --limit 100 --reports-dir=reports/quick   # on the GPU
    .venv/bin/python benchmarks/night_cost.py reports/quick [--registry fixtures/models.yaml]

Reads the run's junit.xml (each test's wall time) and summary.json (each retention row's items)
and prints one table, a row per pair: the measured seconds, and the seconds a run of the
registry's full benchmarks would take, with GPU-hours (seconds × the GPUs the entry's settings
hold). A retention test's time is taken as proportional to its items: its seconds per item times
the items the benchmark holds at full scale (the task's evaluation docs, after the registry's own
``limit`` or ``fraction``; counting them builds the task, so upstream tasks need the Hub or its
cache). The first pair of a model also scored the baseline in its retention tests: that time is
extrapolated the same way, once per model, as a night spends it. Every other test (perplexity,
KLD, throughput, footprint) already runs at full scale under ``--limit`` and is counted as
measured. A linear extrapolation: generation lengths and batching differ between the first items
and the rest, so it is an estimate, to plan shards and budgets with, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from junitparser import JUnitXml

from quantgate.configuration.constants import OVERALL, RETENTION_PREFIX
from quantgate.configuration.registry import Benchmark, load_registry
from quantgate.configuration.tasks import TaskIndex
from quantgate.evaluation.retention import chosen_items, task_sizes
from quantgate.report.rows import bracket_of, named_by

REPO = Path(__file__).resolve().parents[1]
#: the row of tests that belong to no pair (noise floors, baselines)
OTHER = "(no pair: noise floors, baselines)"


def full_items(bench: Benchmark, tasks: TaskIndex, where: str) -> int:
    """The items a run of ``bench`` as the registry states it scores (no --limit)."""
    if bench.fraction is not None:  # each task's seeded subset, as the gate draws it
        return sum(map(len, chosen_items(bench, tasks, where).values()))
    sizes = task_sizes(bench, tasks, where).values()
    return sum(min(n, bench.limit) if bench.limit else n for n in sizes)


def test_seconds(reports: Path) -> dict[str, float]:
    """Each test's wall time by its name (``test_x[pair-...]``), from junit.xml."""
    path = reports / "junit.xml"
    if not path.is_file():
        sys.exit(f"night_cost: {path} not found: pass the --reports-dir of a finished run")
    out: dict[str, float] = {}
    for suite in JUnitXml.fromfile(str(path)):
        for case in suite:
            out[case.name] = out.get(case.name, 0.0) + float(case.time or 0.0)
    return out


def measured_items(reports: Path) -> dict[tuple[str, str], int]:
    """(pair, benchmark) -> the items its retention row was judged on, from summary.json."""
    path = reports / "summary.json"
    if not path.is_file():
        sys.exit(f"night_cost: {path} not found: pass the --reports-dir of a finished run")
    out = {}
    for row in json.loads(path.read_text())["rows"]:
        metric, n = row.get("metric", ""), row.get("n_items")
        bench = metric.removeprefix(RETENTION_PREFIX)
        if bench not in (metric, OVERALL) and n:
            out[row["pair"], bench] = int(n)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", type=Path, help="the --reports-dir of a measured (quick) run")
    ap.add_argument("--registry", type=Path, default=REPO / "fixtures" / "models.yaml")
    opts = ap.parse_args()

    registry = load_registry(opts.registry)
    folders = [registry.resolve(p) for p in registry.data.evaluation.task_paths]
    tasks = TaskIndex(folders, REPO)
    seconds, items = test_seconds(opts.reports), measured_items(opts.reports)
    pairs = {p.id: p for p in registry.pairs()}
    measured: dict[str, float] = defaultdict(float)
    full: dict[str, float] = defaultdict(float)
    sizes: dict[tuple[str, str], int] = {}
    gpus_of: dict[str, int] = {}

    def gpus(model: str) -> int:
        settings = registry.models[model].backend_settings
        return settings.gpus if settings.on_gpu else 0

    for name, secs in seconds.items():
        inside = bracket_of(name) or ""
        pair_id = named_by(inside, pairs)
        if pair_id is None:  # a noise floor or a baseline-only test: the night pays it too
            model = named_by(inside, registry.models)
            measured[OTHER] += secs
            full[OTHER] += secs
            gpus_of[OTHER] = max(gpus_of.get(OTHER, 0), gpus(model) if model else 0)
            continue
        gpus_of[pair_id] = gpus(pairs[pair_id].model_key)
        measured[pair_id] += secs
        bench_name = inside[len(pair_id) + 1 :]
        if not name.startswith("test_retention[") or (pair_id, bench_name) not in items:
            full[pair_id] += secs
            continue
        pair = pairs[pair_id]
        bench = registry.models[pair.model_key].benchmarks[bench_name]
        key = (pair.model_key, bench_name)
        if key not in sizes:
            sizes[key] = full_items(bench, tasks, f"night_cost: {pair.model_key} {bench_name}")
        full[pair_id] += secs * sizes[key] / items[pair_id, bench_name]
    if not measured:
        sys.exit(f"night_cost: no test of a registry pair in {opts.reports}/junit.xml")

    print("| pair | GPUs | measured s | full-scale s (estimate) | GPU-hours (estimate) |")
    print("|---|---|---|---|---|")
    for pair_id in sorted(measured, key=lambda p: (p == OTHER, p)):
        n_gpus = gpus_of[pair_id]
        cells = [pair_id, n_gpus, f"{measured[pair_id]:.0f}", f"{full[pair_id]:.0f}"]
        print("| " + " | ".join(map(str, [*cells, f"{full[pair_id] * n_gpus / 3600:.2f}"])) + " |")
    n_pairs = len(measured) - (OTHER in measured)
    gpu_hours = sum(full[p] * gpus_of[p] / 3600 for p in measured)
    total = [f"{sum(measured.values()):.0f}", f"{sum(full.values()):.0f}", f"{gpu_hours:.2f}"]
    print("| " + " | ".join([f"**{n_pairs} pairs**", "", *total]) + " |")
    print()
    for (model, bench), n in sorted(sizes.items()):
        print(f"{model} {bench}: {n} items at full scale")
    return 0


if __name__ == "__main__":
    sys.exit(main())
