"""reports/summary.json: one row per model x compression x metric.

Rows travel from the test (possibly on an xdist worker) to the controller as a test report
``user_properties`` entry named ``quantgate_row``, so serial and parallel runs write the same file.

Schema (``schema_version`` 2)::

    {"schema_version": 2, "quantgate": "<version>", "created": "<UTC ISO time>",
     "wall_seconds": {"<pair>": evaluation wall time of its tests},
     "rows": [{"model", "compression", "pair", "gate", "metric", "value", "unit", "baseline",
               "threshold", "direction", "threshold_origin", "mode", "ci_low", "ci_high",
               "verdict", "expect", ...gate-specific fields}]}

``verdict`` is ``pass``, ``FAIL`` or ``not gated``; ``expect`` is ``fail`` for a canary's
gates; ``mode`` is the threshold's gate mode (point, ci, strict, sequential) and
``ci_low``/``ci_high`` the 95 % interval where one was measured (else null). Gate-specific
fields: retention D_<bench> rows add ``score``, ``n_items`` (mode sequential: ``sequential``,
the items used and available, the stop and the sequence) and, for correct/wrong metrics,
``correct_to_wrong``,
``wrong_to_correct``, ``mcnemar_p``; the ppl_increase_pct row adds ``ppl`` and
``ppl_baseline``; footprint rows add ``file_size_bytes`` and ``bits_per_weight``; throughput
rows add ``tokens_per_s``. Rows are sorted by (model, compression, gate, metric).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quantgate import __version__
from quantgate.artifacts.cache import write_text_atomic
from quantgate.configuration.constants import metric, split_benchmark_metric
from quantgate.configuration.registry import Pair
from quantgate.night.shards import NOISE_FLOOR_SUFFIX
from quantgate.verdicts.gates import Outcome
from quantgate.verdicts.stats import Interval

ROW_PROPERTY = "quantgate_row"
SCHEMA_VERSION = 2


def outcome_row(pair: Pair, gate: str, outcome: Outcome) -> dict[str, Any]:
    info = metric(outcome.metric)
    return {
        "model": pair.model_key,
        "compression": pair.compression_name,
        "pair": pair.id,
        "gate": gate,
        "metric": outcome.metric,
        "value": outcome.value,
        "unit": info.unit,
        "baseline": outcome.baseline,
        "threshold": outcome.threshold.value if outcome.threshold else None,
        "direction": info.direction.value,
        "threshold_origin": outcome.threshold.origin if outcome.threshold else None,
        "mode": outcome.threshold.mode if outcome.threshold else None,
        "ci_low": outcome.interval.low if outcome.interval else None,
        "ci_high": outcome.interval.high if outcome.interval else None,
        "verdict": outcome.verdict,
        "expect": "fail" if pair.is_canary_for(gate, _benchmark_of(outcome.metric)) else "pass",
        "minimum_detectable": outcome.minimum_detectable,
        "underpowered": outcome.underpowered,
    }


def _benchmark_of(metric_name: str) -> str | None:
    """The benchmark a per-benchmark metric (D_, flips_, Dgold_, choice_kld_) belongs to: a
    canary declared on ``retention.<benchmark>`` expects each of them to fail."""
    split = split_benchmark_metric(metric_name)
    return None if split is None else split[1]


def write_summary(
    path: Path,
    rows: list[dict[str, Any]],
    wall_seconds: dict[str, float] | None = None,
    machines: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """summary.json. ``machines``: where the verdicts were made (quantgate.night.machine), by run:
    "" for one run, "shard K/N" for each shard of a merged night."""
    rows = sorted(rows, key=lambda r: (r["model"], r["compression"], r["gate"], r["metric"]))
    doc = {
        "schema_version": SCHEMA_VERSION,
        "quantgate": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machines": machines or {},
        "rows": rows,
        "wall_seconds": _per_pair(rows, wall_seconds or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
    return doc


def noise_floor_row(
    model_key: str,
    noise: str,
    metric_name: str,
    value: float,
    interval: Interval | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A summary row of the baseline-vs-itself comparison (``noise`` says what differed):
    never gated, ``role`` noise_floor."""
    info = metric(metric_name)
    return {
        "model": model_key,
        "compression": f"noise floor ({noise})",
        "pair": f"{model_key}-noise_floor",
        "gate": info.gate,
        "metric": metric_name,
        "value": value,
        "unit": info.unit,
        "baseline": None,
        "threshold": None,
        "direction": info.direction.value,
        "threshold_origin": None,
        "mode": None,
        "ci_low": interval.low if interval else None,
        "ci_high": interval.high if interval else None,
        "verdict": "not gated",
        "expect": "pass",
        "role": "noise_floor",
        **extra,
    }


def bracket_of(test_id: str) -> str | None:
    """The parametrization of a test id or JUnit name (``smollm2-Q8_0-hellaswag`` of
    ``test_retention[smollm2-Q8_0-hellaswag]``), None for a test with none."""
    return test_id.split("[", 1)[1].rstrip("]") if "[" in test_id else None


def named_by(param: str, keys: Iterable[str]) -> str | None:
    """The longest of ``keys`` that a test's parametrization is, or starts with before a ``-``
    and a suffix (``smollm2-Q8_0-hellaswag`` is pair ``smollm2-Q8_0``'s, not ``smollm2``'s;
    ``smollm2-Q2_K-imatrix`` is that pair's own, not ``smollm2-Q2_K``'s)."""
    by_length = sorted(keys, key=len, reverse=True)
    return next((k for k in by_length if param == k or param.startswith(f"{k}-")), None)


def _per_pair(rows: list[dict[str, Any]], wall: dict[str, float]) -> dict[str, float]:
    """Evaluation wall time per pair: the summed durations of its tests, whose ids may carry a
    benchmark suffix (``smollm2-Q8_0-hellaswag``): each is credited to the longest pair id it
    starts with."""
    pairs = {r["pair"] for r in rows}
    out: dict[str, float] = {}
    for test_id, seconds in wall.items():
        # a noise-floor test's id is its model key; its rows' pair is <model>-noise_floor
        noise_floor = f"{test_id}{NOISE_FLOOR_SUFFIX}"
        pair = noise_floor if noise_floor in pairs else named_by(test_id, pairs)
        if pair is not None:
            out[pair] = round(out.get(pair, 0.0) + seconds, 2)
    return dict(sorted(out.items()))


def junit_outcomes(path: Path) -> dict[str, str]:
    """JUnit XML testcase name -> passed / failed / error / xfailed / skipped (pytest writes a
    strict xfail as a skipped case of type pytest.xfail), for the project's own tests and
    benchmarks that run the gate in a child pytest."""
    import xml.etree.ElementTree as ET

    out = {}
    for case in ET.parse(path).iter("testcase"):
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed" if child.tag == "failure" else "error"
            elif child.tag == "skipped":
                status = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
        out[case.get("name", "")] = status
    return out
