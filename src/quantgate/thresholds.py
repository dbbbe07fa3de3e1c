"""thresholds/: how much each compression may lose, per model, compression and metric.

Layout::

    thresholds/default.yaml      # applies to every model
    thresholds/<model key>.yaml  # overrides for one model (the key from fixtures/models.yaml)

Each file has ``defaults:`` (every compression) and ``compressions: {<name>: {...}}``.
Precedence, lowest to highest (the most specific wins):

    1. default.yaml  defaults
    2. default.yaml  compressions.<name>
    3. <model>.yaml  defaults
    4. <model>.yaml  compressions.<name>

Keys are metric names from quantgate.constants.METRICS, plus ``D_<benchmark>`` and
``D_overall`` for benchmark retention (max % lost) and ``flips_<benchmark>`` (max % of items
whose correctness changed); the direction (max or min) is the metric's own. A metric with no
threshold anywhere is measured and reported but not gated.

A value is a number (gate mode ``point``) or ``{value: <number>, mode: point|ci|strict}``:

* ``point``  — the study's rule: the measured value against the threshold;
* ``ci``     — fail only when the whole 95 % confidence interval breaches the threshold (its
  lower bound for a maximum): noise alone never fails the gate;
* ``strict`` — fail when any part of the interval breaches it (its upper bound for a
  maximum): for release gates, where an undetected loss costs more than a false alarm.

``ci`` and ``strict`` need a metric with an interval (see ``Metric.has_interval``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import yaml

from quantgate.constants import FLIPS_PREFIX, METRICS, OVERALL, RETENTION_PREFIX, metric
from quantgate.errors import ConfigError
from quantgate.registry import Registry
from quantgate.schema_base import did_you_mean

DEFAULT_FILE = "default.yaml"
_TOP_KEYS = ("defaults", "compressions")
GateMode = Literal["point", "ci", "strict"]
GATE_MODES: tuple[str, ...] = ("point", "ci", "strict")


@dataclass(frozen=True)
class Threshold:
    metric: str
    value: float
    #: file and key the value came from, for messages and reports
    origin: str
    mode: GateMode = "point"


@dataclass(frozen=True)
class _Entry:
    value: float
    mode: GateMode


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _entry(key: str, value: object, where: str) -> _Entry:
    if not isinstance(value, dict):
        return _Entry(_number(value, f"{where}.{key}"), "point")
    extra = set(value) - {"value", "mode"}
    if extra or "value" not in value:
        raise ConfigError(
            f"{where}.{key}: expected a number or {{value: <number>, mode: "
            f"{'|'.join(GATE_MODES)}}}, got keys {sorted(map(str, value))}"
        )
    mode = value.get("mode", "point")
    if mode not in GATE_MODES:
        raise ConfigError(
            f"{where}.{key}.mode: {mode!r} is not a gate mode"
            f"{did_you_mean(str(mode), GATE_MODES)}; valid: {', '.join(GATE_MODES)}"
        )
    if mode != "point" and not metric(key).has_interval:
        raise ConfigError(
            f"{where}.{key}.mode: {mode} needs a confidence interval, which {key} does not "
            "have; use mode: point"
        )
    return _Entry(_number(value["value"], f"{where}.{key}.value"), cast(GateMode, mode))


def _check_metrics(table: object, where: str, known: set[str]) -> dict[str, _Entry]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a mapping of metric: number")
    out: dict[str, _Entry] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"{where}: unknown threshold key {key!r}{did_you_mean(str(key), known)}; "
                f"valid: {', '.join(sorted(known))}"
            )
        out[key] = _entry(key, value, where)
    return out


@dataclass(frozen=True)
class ThresholdFile:
    path: Path
    defaults: dict[str, _Entry]
    compressions: dict[str, dict[str, _Entry]]

    @classmethod
    def load(
        cls, path: Path, known_compressions: set[str], known_metrics: set[str]
    ) -> ThresholdFile:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping with {' and/or '.join(_TOP_KEYS)}")
        for key in raw:
            if key not in _TOP_KEYS:
                raise ConfigError(
                    f"{path}: unknown key {key!r}{did_you_mean(str(key), _TOP_KEYS)}; "
                    f"valid: {', '.join(_TOP_KEYS)}"
                )
        comps = raw.get("compressions") or {}
        if not isinstance(comps, dict):
            raise ConfigError(f"{path}: compressions: expected a mapping of name: {{metric: n}}")
        for name in comps:
            if name not in known_compressions:
                raise ConfigError(
                    f"{path}: compressions.{name}: no such compression in the registry"
                    f"{did_you_mean(str(name), known_compressions)}; "
                    f"known: {', '.join(sorted(known_compressions))}"
                )
        return cls(
            path=path,
            defaults=_check_metrics(raw.get("defaults"), f"{path}: defaults", known_metrics),
            compressions={
                str(n): _check_metrics(t, f"{path}: compressions.{n}", known_metrics)
                for n, t in comps.items()
            },
        )


class Thresholds:
    """All threshold files of a directory, validated against the registry up front."""

    def __init__(self, directory: Path, registry: Registry) -> None:
        self.directory = directory
        default = directory / DEFAULT_FILE
        if not default.is_file():
            raise ConfigError(f"{default} not found; pass --thresholds DIR holding {DEFAULT_FILE}")
        all_compressions = {c for m in registry.models.values() for c in m.compressions}
        # D_<benchmark> for every benchmark the registry declares, and D_overall (their mean);
        # flips_<benchmark> for each benchmark
        known = (
            set(METRICS)
            | {f"{RETENTION_PREFIX}{b}" for b in (*registry.benchmark_names, OVERALL)}
            | {f"{FLIPS_PREFIX}{b}" for b in registry.benchmark_names}
        )
        self.default = ThresholdFile.load(default, all_compressions, known)
        self.per_model: dict[str, ThresholdFile] = {}
        for path in sorted(directory.glob("*.yaml")):
            if path.name == DEFAULT_FILE:
                continue
            key = path.stem
            if key not in registry.models:
                raise ConfigError(
                    f"{path}: no model {key!r} in {registry.path}"
                    f"{did_you_mean(key, registry.models)}; a model file is named <model key>.yaml"
                )
            self.per_model[key] = ThresholdFile.load(
                path, set(registry.models[key].compressions), known
            )

    def for_pair(self, model_key: str, compression: str) -> dict[str, Threshold]:
        """The effective threshold of every gated metric for one pair (precedence above)."""
        layers: list[tuple[ThresholdFile, str | None]] = [
            (self.default, None),
            (self.default, compression),
        ]
        if model_key in self.per_model:
            layers += [(self.per_model[model_key], None), (self.per_model[model_key], compression)]
        out: dict[str, Threshold] = {}
        for tfile, comp in layers:
            table = tfile.defaults if comp is None else tfile.compressions.get(comp, {})
            origin = f"{tfile.path.name}:" + (
                "defaults" if comp is None else f"compressions.{comp}"
            )
            for name, entry in table.items():
                out[name] = Threshold(name, entry.value, origin, entry.mode)
        return out
