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

Keys are metric names from quantgate.configuration.constants.METRICS, plus ``D_<benchmark>`` and
``D_overall`` for benchmark retention (max % lost) and ``flips_<benchmark>`` (max % of items
whose correctness changed); the direction (max or min) is the metric's own. A metric with no
threshold anywhere is measured and reported but not gated.

A value is a number (gate mode ``point``), ``{value: <number>, mode: <mode>}``, or ``null``:
no bound for this model or compression, where a lower layer set one (``D_gsm8k: null`` for a
model that scores 0 on GSM8K, whose retention is undefined):

* ``point``  — the study's rule: the measured value against the threshold;
* ``ci``     — fail only when the whole 95 % confidence interval breaches the threshold (its
  lower bound for a maximum): noise alone never fails the gate;
* ``strict`` — fail when any part of the interval breaches it (its upper bound for a
  maximum): for release gates, where an undetected loss costs more than a false alarm.

* ``sequential`` — ``D_<benchmark>``, ``ppl_increase_pct``, ``ln_ppl_ratio`` and ``kld_mean``:
  the benchmark's items (the text's chunks) are scored in a seeded random order in batches and
  the gate stops as soon as an anytime-valid confidence sequence lies wholly on one side of the
  threshold (quantgate.verdicts.sequential); when the items run out, mode ``ci``'s verdict on the
  paired interval applies.

``ci``, ``strict`` and ``sequential`` need a metric with an interval (see
``Metric.has_interval``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import yaml

from quantgate.configuration.constants import (
    METRICS,
    OVERALL,
    PER_BENCHMARK,
    RETENTION_PREFIX,
    SEQUENTIAL_CHUNK_METRICS,
    metric,
    split_benchmark_metric,
)
from quantgate.configuration.problems import Problems
from quantgate.configuration.registry import Pair, Registry
from quantgate.configuration.schema_base import did_you_mean
from quantgate.errors import ConfigError
from quantgate.verdicts.gates import GATE_MODES, GateMode, Threshold

DEFAULT_FILE = "default.yaml"
_TOP_KEYS = ("defaults", "compressions")
#: the perplexity rule in % and in nats: ln_ppl_ratio = ln(1 + ppl_increase_pct / 100)
_PPL_RULES = frozenset({"ppl_increase_pct", "ln_ppl_ratio"})


@dataclass(frozen=True)
class _Entry:
    value: float
    mode: GateMode


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if math.isinf(value):
        raise ConfigError(
            f"{where}: {value!r} is no bound (nothing can breach it); delete the key to leave "
            "the metric ungated, or give a finite number"
        )
    return float(value)


def _per_benchmark_retention(key: str) -> bool:
    split = split_benchmark_metric(key)
    return split is not None and split[0] == RETENTION_PREFIX and split[1] != OVERALL


def accepts_sequential(key: str) -> bool:
    """Whether a bound on ``key`` may be in mode sequential: a per-benchmark D_ or a chunk mean."""
    return _per_benchmark_retention(key) or key in SEQUENTIAL_CHUNK_METRICS


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
    if mode == "sequential" and not accepts_sequential(key):
        raise ConfigError(
            f"{where}.{key}.mode: sequential stops an evaluation early and judges "
            f"D_<benchmark> and {', '.join(SEQUENTIAL_CHUNK_METRICS)} only (not D_overall, "
            "flips, graded metrics, kld_p99 or top-1 agreement); use ci"
        )
    if mode != "point" and not metric(key).has_interval:
        raise ConfigError(
            f"{where}.{key}.mode: {mode} needs a confidence interval, which {key} does not "
            "have; use mode: point"
        )
    return _Entry(_number(value["value"], f"{where}.{key}.value"), cast(GateMode, mode))


def _check_metrics(
    table: object, where: str, known: set[str], problems: Problems
) -> dict[str, _Entry | None]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        problems.add(f"{where}: expected a mapping of metric: number")
        return {}
    out: dict[str, _Entry | None] = {}
    for key, value in table.items():
        if key not in known:
            problems.add(
                f"{where}: unknown threshold key {key!r}{did_you_mean(str(key), known)}; "
                f"valid: {', '.join(sorted(known))}"
            )
            # the key it misspells is then not also reported as missing
            problems.invalid_keys.update(difflib.get_close_matches(str(key), known, n=1))
            continue
        if value is None:  # null: ungated here, whatever a lower layer says
            out[key] = None
            continue
        before = len(problems.found)
        with problems.gather():
            out[key] = _entry(key, value, where)
        if len(problems.found) > before:
            problems.invalid_keys.add(str(key))
    return out


@dataclass(frozen=True)
class ThresholdFile:
    path: Path
    #: metric -> its bound, or None where the file says null (no bound here)
    defaults: dict[str, _Entry | None]
    compressions: dict[str, dict[str, _Entry | None]]

    @classmethod
    def load(
        cls,
        path: Path,
        known_compressions: set[str],
        known_metrics: set[str],
        problems: Problems | None = None,
    ) -> ThresholdFile:
        """Raises ConfigError listing every problem of the file, unless ``problems`` gathers
        them (the file is then loaded with what is valid)."""
        own = Problems() if problems is None else problems
        loaded = cls._load(path, known_compressions, known_metrics, own)
        if problems is None:
            own.raise_any()
        return loaded

    @classmethod
    def _load(
        cls, path: Path, known_compressions: set[str], known_metrics: set[str], problems: Problems
    ) -> ThresholdFile:
        empty = cls(path=path, defaults={}, compressions={})
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            problems.add(f"{path}: invalid YAML ({getattr(exc, 'problem', exc)})")
            return empty
        if not isinstance(raw, dict):
            problems.add(f"{path}: expected a mapping with {' and/or '.join(_TOP_KEYS)}")
            return empty
        for key in raw:
            if key not in _TOP_KEYS:
                problems.add(
                    f"{path}: unknown key {key!r}{did_you_mean(str(key), _TOP_KEYS)}; "
                    f"valid: {', '.join(_TOP_KEYS)}"
                )
        comps = raw.get("compressions") or {}
        if not isinstance(comps, dict):
            problems.add(f"{path}: compressions: expected a mapping of name: {{metric: n}}")
            comps = {}
        for name in list(comps):
            if name not in known_compressions:
                problems.add(
                    f"{path}: compressions.{name}: no such compression in the registry"
                    f"{did_you_mean(str(name), known_compressions)}; "
                    f"known: {', '.join(sorted(known_compressions))}"
                )
                comps = {k: v for k, v in comps.items() if k != name}
        return cls(
            path=path,
            defaults=_check_metrics(
                raw.get("defaults"), f"{path}: defaults", known_metrics, problems
            ),
            compressions={
                str(n): _check_metrics(t, f"{path}: compressions.{n}", known_metrics, problems)
                for n, t in comps.items()
            },
        )


class Thresholds:
    """All threshold files of a directory, validated against the registry up front."""

    def __init__(
        self, directory: Path, registry: Registry, problems: Problems | None = None
    ) -> None:
        """Raises ConfigError listing every problem, unless ``problems`` gathers them."""
        own = Problems() if problems is None else problems
        self._read(directory, registry, own)
        if problems is None:
            own.raise_any()

    def _read(self, directory: Path, registry: Registry, problems: Problems) -> None:
        self.directory = directory
        self.per_model: dict[str, ThresholdFile] = {}
        default = directory / DEFAULT_FILE
        self.default = ThresholdFile(default, {}, {})
        if not default.is_file():
            problems.add(f"{default} not found; pass --thresholds DIR holding {DEFAULT_FILE}")
            return
        with problems.gather():
            if not (yaml.safe_load(default.read_text(encoding="utf-8")) or {}):
                raise ConfigError(
                    f"{default} is empty: it holds the bounds every model falls back on; "
                    "restore it (git checkout thresholds/default.yaml) or write its defaults:"
                )
        broken = registry.broken
        all_compressions = {c for m in registry.models.values() for c in m.compressions}
        all_compressions |= {c for b in broken.values() for c in b.compressions}
        # every per-benchmark family (D_, flips_, Dgold_, choice_kld_) for every benchmark the
        # registry declares, and D_overall (the mean of the D_)
        benchmarks = registry.benchmark_names | {n for b in broken.values() for n in b.benchmarks}
        known = (
            set(METRICS)
            | {f"{p}{b}" for p in PER_BENCHMARK for b in benchmarks}
            | {f"{RETENTION_PREFIX}{OVERALL}"}
        )
        self.default = ThresholdFile.load(default, all_compressions, known, problems)
        for path in sorted(directory.glob("*.yaml")):
            if path.name == DEFAULT_FILE:
                continue
            key = path.stem
            if key in broken:  # its entry is invalid: check the file's own form only
                ThresholdFile.load(path, set(broken[key].compressions), known, problems)
                continue
            if key not in registry.models:
                problems.add(
                    f"{path}: no model {key!r} in {registry.path}"
                    f"{did_you_mean(key, registry.models)}; a model file is named <model key>.yaml"
                )
                continue
            self.per_model[key] = ThresholdFile.load(
                path, set(registry.models[key].compressions), known, problems
            )
        self.validate(registry, problems)

    def validate(self, registry: Registry, problems: Problems) -> None:
        """Every configured bound gets judged, and every judged benchmark has a bound: a bound
        that no test of its pair measures would read as a pass it never was.

        * a key of a model file's compressions.<name> must be measurable for that pair; a key
          of its defaults for some pair of the model; default.yaml's sections apply across
          models, so each key needs some pair that measures it (D_ifeval: a model with
          IFEval);
        * a pair that runs retention needs a D_<benchmark> bound for each of its benchmarks;
        * ppl_increase_pct and ln_ppl_ratio are one rule in two units: a section sets one
          (for_pair keeps the more specific of the two when layers set both).

        Each problem (naming the file and key and what to do) goes to ``problems``. With a
        broken model entry in the registry, default.yaml's "some pair measures it" check is left
        for when the entry is fixed: that pair may be the one that measures it.
        """
        pairs = registry.pairs()
        for model_key, tfile in [("", self.default), *self.per_model.items()]:
            mine = [p for p in pairs if not model_key or p.model_key == model_key]
            sections = {"defaults": (tfile.defaults, mine)} | {
                f"compressions.{c}": (t, [p for p in mine if p.compression_name == c])
                for c, t in tfile.compressions.items()
            }
            for where, (table, scope) in sections.items():
                # a model file's compression section speaks of one pair: it must measure every
                # key; the other sections apply to several pairs, one of which must
                every = bool(model_key) and where != "defaults"
                if not model_key and registry.broken:
                    continue
                for key, entry in table.items():
                    if entry is None:  # null bounds nothing: there is nothing to judge
                        continue
                    whys = [_unmeasured(p, key) for p in scope]
                    if whys and (any(whys) if every else all(whys)):
                        why = next(w for w in whys if w)
                        problems.add(f"{tfile.path}: {where}.{key}: {why}; delete the key")
        for tfile in (self.default, *self.per_model.values()):
            sections = {"defaults": tfile.defaults} | {
                f"compressions.{c}": t for c, t in tfile.compressions.items()
            }
            for where, table in sections.items():
                if {k for k, e in table.items() if e is not None} >= _PPL_RULES:
                    problems.add(
                        f"{tfile.path}: {where}: ppl_increase_pct and ln_ppl_ratio are one rule "
                        "in two units (ln_ppl_ratio = ln(1 + ppl_increase_pct / 100)); keep one"
                    )
        unbounded: dict[tuple[str, str], list[str]] = {}
        for pair in pairs:
            effective = self.for_pair(pair.model_key, pair.compression_name)
            if "retention" in pair.compression.skip:
                continue
            for bench in pair.model.benchmarks:
                # D_<bench>, or another of the benchmark's paired metrics where D is set to
                # null (answers_changed_gsm8k for a model that scores 0 on GSM8K)
                keys = {f"{prefix}{bench}" for prefix in PER_BENCHMARK}
                # a bound given but invalid is reported as such, not as missing too
                if not keys & (set(effective) | problems.invalid_keys):
                    unbounded.setdefault((pair.model_key, bench), []).append(pair.compression_name)
        for (model_key, bench), names in unbounded.items():
            key, model_file = f"{RETENTION_PREFIX}{bench}", self.directory / f"{model_key}.yaml"
            others = ", ".join(f"{p}{bench}" for p in PER_BENCHMARK if p != RETENTION_PREFIX)
            problems.add(
                f"{model_key}-{'/'.join(names)}: benchmark {bench} has no bound: add {key} to "
                f"{model_file}'s defaults (or to {self.default.path}), or, where it is null, "
                f"one of {others}; a retention gate without a bound would judge nothing"
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
                if entry is None:  # null: no bound from here up, unless a higher layer sets one
                    out.pop(name, None)
                    continue
                if name in _PPL_RULES:  # one rule in two units: the more specific layer wins
                    for other in _PPL_RULES - {name}:
                        out.pop(other, None)
                out[name] = Threshold(name, entry.value, origin, entry.mode)
        return out


def _unmeasured(pair: Pair, key: str) -> str | None:
    """Why no test of ``pair`` measures metric ``key`` (None: some test does)."""
    info = metric(key)
    if info.gate in pair.compression.skip:
        return f"{pair.id} skips the {info.gate} gate (skip: in the registry)"
    split = split_benchmark_metric(key)
    if split is not None and split[1] != OVERALL and split[1] not in pair.model.benchmarks:
        return (
            f"models.{pair.model_key} declares no benchmark {split[1]!r} "
            f"(it has: {', '.join(pair.model.benchmarks) or 'none'})"
        )
    if key == f"{RETENTION_PREFIX}{OVERALL}" and not pair.model.benchmarks:
        return f"models.{pair.model_key} declares no benchmarks"
    if key == "peak_vram_mib" and not pair.model.on_gpu:
        return f"{pair.id} runs on the CPU (no n_gpu_layers, device or vLLM): no VRAM to measure"
    return None
