"""lm-eval tasks by name: the local task and group YAMLs under ``evaluation.task_paths``,
lm-eval's own (upstream) index when a benchmark names one, and the check that each benchmark's
task, metric and filter exist, made before any test runs."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from quantgate.configuration.schema_base import did_you_mean
from quantgate.errors import ConfigError

# a task's name on its own line (a group's ``task:`` is a list on the lines below)
_TASK_LINE = re.compile(r"^task:[ \t]*['\"]?([\w.-]+)", re.M)
_GROUP_LINE = re.compile(r"^group:[ \t]*['\"]?([\w.-]+)", re.M)
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


def task_filters(config: dict[str, Any]) -> set[str]:
    """The filter names a task config's metrics are reported under (``none`` without a
    filter_list, as lm-eval names its default)."""
    listed = config.get("filter_list")
    if isinstance(listed, list) and listed:
        return {str(f["name"]) for f in listed if isinstance(f, dict) and "name" in f}
    return {"none"}


def group_members(config: dict[str, Any]) -> list[str]:
    """The task names a group config lists (``task:`` entries, names or dicts with a name)."""
    out = []
    for entry in config.get("task") or []:
        name = entry.get("task") if isinstance(entry, dict) else entry
        if isinstance(name, str):
            out.append(name)
    return out


class TaskIndex:
    """Local task YAMLs by task name, and the check that every declared task resolves
    (lm-eval skips a task it cannot find, or an ``include:`` it cannot read, too quietly)."""

    def __init__(self, folders: list[Path], data_root: Path) -> None:
        self.folders = folders
        self.data_root = data_root
        self.local: dict[str, Path] = {}
        #: local group YAMLs by group name (their members are local tasks)
        self.groups: dict[str, Path] = {}
        for folder in folders:
            if not folder.is_dir():
                raise ConfigError(f"task path {folder} is not a folder; fix evaluation.task_paths")
            for path in sorted(folder.glob("*.yaml")):
                text = path.read_text(encoding="utf-8")
                # a task YAML may carry an old-style ``group:`` tag: its own task name decides
                if m := _TASK_LINE.search(text):
                    self.local[m.group(1)] = path
                elif g := _GROUP_LINE.search(text):
                    self.groups[g.group(1)] = path
        self._upstream: set[str] | None = None
        self._fingerprints: dict[str, str] = {}
        self._managers: dict[bool, Any] = {}

    def is_local(self, task: str) -> bool:
        """A task or group under ``task_paths`` (lm-eval's own index is not needed for it)."""
        return task in self.local or task in self.groups

    def check(self, task: str, metric: str, where: str, upstream: bool = True) -> None:
        """The task (or group) exists and reports ``metric`` (``name`` or ``name,filter``)
        before any test runs; lm-eval's run checks it again on its results. ``upstream=False``
        leaves a task that is not local unchecked (lm-eval's index costs ~9 s: it is built
        only for the tests that run).

        Raises:
            ConfigError: an unknown task, group member, metric or filter, a group without an
                aggregate, or a local task's missing data file.
        """
        name, _, filter_name = metric.partition(",")
        if task in self.groups:
            self._check_group(task, name, filter_name or "none", where)
            return
        if task not in self.local and not upstream:
            return
        local = task in self.local
        config = self._local_plain(task) if local else self._upstream_plain(task, where)
        if config is not None:
            self._check_metric(task, config, name, filter_name or "none", where)

    @staticmethod
    def _check_metric(
        task: str, config: dict[str, Any], name: str, filter_name: str, where: str
    ) -> None:
        reported = task_metrics(config)
        if reported is not None and name not in reported:
            raise ConfigError(
                f"{where}.metric: task {task} has no metric {name!r}"
                f"{did_you_mean(name, reported)}; it reports: {', '.join(sorted(reported))}"
            )
        filters = task_filters(config)
        if filter_name not in filters:
            raise ConfigError(
                f"{where}.metric: task {task} has no filter {filter_name!r}"
                f"{did_you_mean(filter_name, filters)}; its filters: {', '.join(sorted(filters))}"
                f" (write the metric as {name},<filter>)"
            )

    def _check_group(self, group: str, name: str, filter_name: str, where: str) -> None:
        config = _read_task_yaml(self.groups[group])
        aggregated = {
            str(m.get("metric"))
            for m in config.get("aggregate_metric_list") or []
            if isinstance(m, dict)
        }
        if name not in aggregated:
            raise ConfigError(
                f"{where}.metric: group {group} ({self.groups[group]}) aggregates no {name!r}: "
                f"lm-eval reports a group score only for its aggregate_metric_list "
                f"({', '.join(sorted(aggregated)) or 'empty'}); add {name} there"
            )
        members = group_members(config)
        if not members:
            raise ConfigError(f"{where}: group {group} ({self.groups[group]}) lists no task")
        if any(isinstance(e, dict) and set(e) - {"task"} for e in config.get("task") or []):
            raise ConfigError(
                f"{where}: group {group} ({self.groups[group]}) overrides a member's keys; "
                "a local group lists task names: put the keys in the task's own YAML"
            )
        for member in members:
            if member not in self.local:
                raise ConfigError(
                    f"{where}: group {group} ({self.groups[group]}) lists {member!r}, which is "
                    f"not a local task{did_you_mean(member, self.local)}; local groups hold "
                    f"local tasks (under {', '.join(map(str, self.folders))})"
                )
            self._check_metric(member, self._local_plain(member), name, filter_name, where)

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
        from lm_eval.tasks._index import Kind

        self.resolve(task, where)
        # lm-eval 0.4.13's index maps a name to an Entry (kind, yaml_path)
        entry = self.task_manager(upstream=True).task_index.get(task)
        path = getattr(entry, "yaml_path", None)
        if (
            getattr(entry, "kind", None) is not Kind.TASK
            or path is None
            or not Path(path).is_file()
        ):
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

    def resolve(self, task: str, where: str) -> Any:
        """The task config (a local YAML, data paths made absolute), a local group (lm-eval's
        Group, its members built the same way), or an upstream task or group name."""
        if task in self.local:
            return self._local_config(task)
        if task in self.groups:
            return self._local_group(task)
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

    def _local_group(self, group: str) -> Any:
        """The group as lm-eval's own Group object, each member built from its local config
        (data paths made absolute). lm-eval 0.4.13 cannot be given a local group otherwise:
        by name it reads the members' data paths against the working directory, as a dict it
        hands the group's keys to every member, as a path it takes the task list for the name.
        """
        from dataclasses import fields

        from lm_eval.api.group import Group
        from lm_eval.api.task import ConfigurableTask
        from lm_eval.config.group import GroupConfig
        from lm_eval.tasks._yaml_loader import load_yaml

        config = load_yaml(self.groups[group])
        keys = {f.name for f in fields(GroupConfig)}
        shell = Group.from_config(GroupConfig(**{k: v for k, v in config.items() if k in keys}))
        for member in group_members(config):
            member_config = self._local_config(member)
            for key in ("tag", "group", "task_list"):  # as lm-eval's own task builder does
                member_config.pop(key, None)
            shell.add(ConfigurableTask(config=member_config))
        return shell

    def fingerprint(self, task: str) -> str:
        """What identifies a task's content: its YAML and data bytes (local; a group's, with
        its members'), else the name."""
        if task in self.groups:
            if task not in self._fingerprints:
                h = hashlib.sha256(self.groups[task].read_bytes())
                for member in group_members(_read_task_yaml(self.groups[task])):
                    h.update(self.fingerprint(member).encode())
                self._fingerprints[task] = h.hexdigest()
            return self._fingerprints[task]
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
