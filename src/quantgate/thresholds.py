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
``D_overall`` for benchmark retention (max % lost); the direction (max or min) is the
metric's own. A metric with no threshold anywhere is measured and reported but not gated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from quantgate.constants import METRICS, OVERALL, RETENTION_PREFIX
from quantgate.errors import ConfigError
from quantgate.registry import Registry
from quantgate.schema_base import did_you_mean

DEFAULT_FILE = "default.yaml"
_TOP_KEYS = ("defaults", "compressions")


@dataclass(frozen=True)
class Threshold:
    metric: str
    value: float
    #: file and key the value came from, for messages and reports
    origin: str


def _check_metrics(table: object, where: str, known: set[str]) -> dict[str, float]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a mapping of metric: number")
    out: dict[str, float] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"{where}: unknown threshold key {key!r}{did_you_mean(str(key), known)}; "
                f"valid: {', '.join(sorted(known))}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
        out[key] = float(value)
    return out


@dataclass(frozen=True)
class ThresholdFile:
    path: Path
    defaults: dict[str, float]
    compressions: dict[str, dict[str, float]]

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
        # D_<benchmark> for every benchmark the registry declares, and D_overall (their mean)
        known = set(METRICS) | {
            f"{RETENTION_PREFIX}{b}" for b in (*registry.benchmark_names, OVERALL)
        }
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
            for metric, value in table.items():
                out[metric] = Threshold(metric, value, origin)
        return out
