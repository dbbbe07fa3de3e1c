"""The configuration, checked once before any test runs: the registry, the selection, the
threshold files and every benchmark's task and metric. Each problem is gathered, and all of
them are raised as one usage error, so a user fixes three typos in one round.

Two moments, by cost: at configure time everything that reads local files (the registry,
thresholds/, the local task YAMLs); once collection has chosen the tests, the benchmarks of
those tests that need lm-eval's own task index (about 9 s to build, so only when one runs)
and, under ``--baseline pinned``, their pinned scores.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from quantgate.configuration.problems import Problems
from quantgate.configuration.registry import Registry, read_registry
from quantgate.configuration.tasks import TaskIndex
from quantgate.configuration.thresholds import Thresholds


@dataclass(frozen=True)
class Configuration:
    registry: Registry
    thresholds: Thresholds
    tasks: TaskIndex


def load_configuration(
    registry_path: Path,
    thresholds_dir: Path,
    models: list[str],
    compressions: list[str],
    root: Path,
    limit: int | None = None,
) -> Configuration:
    """The validated registry, thresholds and task index; ``limit`` caps every benchmark's
    items (``Registry.with_limit``).

    Raises:
        ConfigError: every problem found, one line each.
    """
    registry, problems = read_registry(registry_path)
    if registry is None:  # unreadable, or its top level is invalid: nothing to check against
        problems.raise_any()
    assert registry is not None
    if limit is not None:
        registry = registry.with_limit(limit)
    with problems.gather():
        registry.pairs(models, compressions)
    thresholds = Thresholds(thresholds_dir, registry, problems)
    tasks = TaskIndex([], root)
    with problems.gather():
        folders = [registry.resolve(p) for p in registry.data.evaluation.task_paths]
        tasks = TaskIndex(folders, root)
    for key, entry in registry.models.items():
        for name, bench in entry.benchmarks.items():
            with problems.gather():
                where = f"{registry.path}: models.{key}.benchmarks.{name}"
                tasks.check(bench.task, bench.metric, where, upstream=False)
    problems.raise_any()
    return Configuration(registry, thresholds, tasks)


def check_selected_benchmarks(
    config: Configuration, selected: Iterable[tuple[str, str]], baseline_mode: str
) -> None:
    """The (model key, benchmark) pairs the collected tests will score: their upstream tasks
    and metrics exist, and ``--baseline pinned`` has a score to use for each.

    Raises:
        ConfigError: every problem found, one line each.
    """
    problems = Problems()
    registry = config.registry
    for key, name in sorted(set(selected)):
        bench = registry.models[key].benchmarks[name]
        where = f"{registry.path}: models.{key}.benchmarks.{name}"
        with problems.gather():
            config.tasks.check(bench.task, bench.metric, where)
        if baseline_mode == "pinned" and bench.pinned_baseline is None:
            problems.add(
                f"{where}: --baseline pinned, but the entry has no pinned_baseline; add one "
                "or use --baseline live"
            )
    problems.raise_any()
