"""lm-eval tasks by name: the local task YAMLs under ``evaluation.task_paths``, lm-eval's own
(upstream) index when a benchmark names one, and the check that each benchmark's task and
metric exist, made before any test runs."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from quantgate.errors import ConfigError
from quantgate.schema_base import did_you_mean

_TASK_LINE = re.compile(r"^task:\s*['\"]?([\w.-]+)", re.M)
#: lm-eval's metrics for a task without a metric_list (lm_eval.api.registry
#: DEFAULT_METRIC_REGISTRY, 0.4.x)
_DEFAULT_METRICS = {
    "loglikelihood": {"perplexity", "acc"},
    "loglikelihood_rolling": {"word_perplexity", "byte_perplexity", "bits_per_byte"},
    "multiple_choice": {"acc", "acc_norm"},
    "generate_until": {"exact_match"},
}


class _TaskYaml(yaml.SafeLoader):
    """Safe YAML that reads a task file's ``!function`` tags as None: the check needs only
    plain keys (metric_list, output_type, include), and importing lm-eval's own loader costs
    ~1.6 s at every pytest start."""


_TaskYaml.add_multi_constructor("!", lambda loader, suffix, node: None)


def _read_task_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """A task YAML's plain keys, with those of its ``include:`` (relative to it) beneath."""
    loader = _TaskYaml(path.read_text(encoding="utf-8"))
    try:
        doc = loader.get_single_data() or {}
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        return {}
    include = doc.get("include")
    if isinstance(include, str) and depth < 8:
        base = path.parent / include
        if base.is_file():
            doc = {**_read_task_yaml(base, depth + 1), **doc}
    return doc


def _has_content(path: Path, block: int = 1 << 16) -> bool:
    """Whether the file holds more than whitespace: read until the first other byte, so a
    check made at every pytest start does not read a whole data set."""
    with path.open("rb") as f:
        while chunk := f.read(block):
            if chunk.decode("utf-8", errors="ignore").strip():  # as str.strip() judges it
                return True
    return False


def task_metrics(config: dict[str, Any]) -> set[str] | None:
    """The metrics a task config reports (None: not known without lm-eval, e.g. a group)."""
    listed = config.get("metric_list")
    if isinstance(listed, list):
        return {str(m["metric"]) for m in listed if isinstance(m, dict) and "metric" in m}
    return _DEFAULT_METRICS.get(str(config.get("output_type")))


class TaskIndex:
    """Local task YAMLs by task name, and the check that every declared task resolves
    (lm-eval skips a task it cannot find, or an ``include:`` it cannot read, too quietly)."""

    def __init__(self, folders: list[Path], data_root: Path) -> None:
        self.folders = folders
        self.data_root = data_root
        self.local: dict[str, Path] = {}
        for folder in folders:
            if not folder.is_dir():
                raise ConfigError(f"task path {folder} is not a folder; fix evaluation.task_paths")
            for path in sorted(folder.glob("*.yaml")):
                m = _TASK_LINE.search(path.read_text(encoding="utf-8"))
                if m:
                    self.local[m.group(1)] = path
        self._upstream: set[str] | None = None
        self._fingerprints: dict[str, str] = {}
        self._managers: dict[bool, Any] = {}

    def check(self, task: str, metric: str, where: str, upstream: bool = True) -> None:
        """The task exists and reports ``metric`` (before any test runs; lm-eval's run checks
        the metric again on its results). ``upstream=False`` leaves a task that is not local
        unchecked (lm-eval's index costs ~9 s: it is built only for the tests that run).

        Raises:
            ConfigError: an unknown task or metric, or a local task's missing data file.
        """
        if task not in self.local and not upstream:
            return
        local = task in self.local
        config = self._local_plain(task) if local else self._upstream_plain(task, where)
        reported = task_metrics(config) if config is not None else None
        if reported is not None and metric not in reported:
            raise ConfigError(
                f"{where}.metric: task {task} has no metric {metric!r}"
                f"{did_you_mean(metric, reported)}; it reports: {', '.join(sorted(reported))}"
            )

    def _local_plain(self, task: str) -> dict[str, Any]:
        path = self.local[task]
        config = _read_task_yaml(path)
        files = (config.get("dataset_kwargs") or {}).get("data_files") or {}
        for split, rel in files.items():
            absolute = self._data_path(rel)
            if not absolute.is_file():
                raise ConfigError(f"{path}: data_files.{split}: {absolute} not found")
            if not _has_content(absolute):
                raise ConfigError(f"{path}: data_files.{split}: {absolute} is empty")
        return config

    def _data_path(self, rel: str) -> Path:
        return (self.data_root / rel) if not Path(rel).is_absolute() else Path(rel)

    def _upstream_plain(self, task: str, where: str) -> dict[str, Any] | None:
        """An upstream task's YAML keys (None for a group or a python task)."""
        self.resolve(task, where)
        entry = self.task_manager(upstream=True).task_index.get(task) or {}
        path = entry.get("yaml_path")
        if entry.get("type") != "task" or not isinstance(path, str) or not Path(path).is_file():
            return None
        return _read_task_yaml(Path(path))

    def task_manager(self, upstream: bool) -> Any:
        """lm-eval's TaskManager, built once per session. Indexing lm-eval's own task YAMLs takes
        ~9 s on 2 cores, so a run whose tasks are all local skips it (``include_defaults``)."""
        if upstream not in self._managers:
            from lm_eval.tasks import TaskManager

            self._managers[upstream] = TaskManager(
                include_path=[str(f) for f in self.folders] or None, include_defaults=upstream
            )
        return self._managers[upstream]

    def resolve(self, task: str, where: str) -> dict[str, Any] | str:
        """The task config (a local YAML, data paths made absolute) or an upstream task name."""
        if task in self.local:
            return self._local_config(task)
        if self._upstream is None:
            self._upstream = set(self.task_manager(upstream=True).all_tasks)
        if task not in self._upstream:
            raise ConfigError(
                f"{where}: lm-eval knows no task {task!r}"
                f"{did_you_mean(task, [*self.local, *self._upstream])}; local tasks in "
                f"{', '.join(map(str, self.folders)) or '(no task_paths)'}: "
                f"{', '.join(self.local) or 'none'}"
            )
        return task

    def _local_config(self, task: str) -> dict[str, Any]:
        # lm-eval's own loader (0.4.13): resolves !function and include: like its TaskManager
        from lm_eval.tasks._yaml_loader import load_yaml

        self._local_plain(task)  # its data files exist and hold something
        config = load_yaml(self.local[task])
        files = (config.get("dataset_kwargs") or {}).get("data_files") or {}
        for split, rel in list(files.items()):
            files[split] = str(self._data_path(rel))
        return config

    def fingerprint(self, task: str) -> str:
        """What identifies a task's content: its YAML and data bytes (local), else the name."""
        if task not in self.local:
            return task
        # once per session: every benchmark test asks twice (baseline and compressed model), and
        # hashing means loading the YAML and reading every data file
        if task not in self._fingerprints:
            h = hashlib.sha256(self.local[task].read_bytes())
            # plain keys suffice for the data files: lm-eval's loader would import the task's
            # !function modules, seconds that a cached result never needs
            files = (self._local_plain(task).get("dataset_kwargs") or {}).get("data_files") or {}
            for absolute in sorted(str(self._data_path(rel)) for rel in files.values()):
                h.update(Path(absolute).read_bytes())
            self._fingerprints[task] = h.hexdigest()
        return self._fingerprints[task]
