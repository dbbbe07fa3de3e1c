"""reports/summary.json: one row per model x compression x metric.

Rows travel from the test (possibly on an xdist worker) to the controller as a test report
``user_properties`` entry named ``quantgate_row``, so serial and parallel runs write the same file.

Schema (``schema_version`` 1)::

    {"schema_version": 1, "quantgate": "<version>", "created": "<UTC ISO time>",
     "rows": [{"model", "compression", "pair", "gate", "metric", "value", "unit", "baseline",
               "threshold", "direction", "threshold_origin", "verdict", "expect", "test"}]}

``verdict`` is ``pass``, ``FAIL`` or ``not gated``; ``expect`` is ``fail`` for a canary's
gates. Rows are sorted by (model, compression, gate, metric).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from quantgate import __version__
from quantgate.constants import RETENTION_PREFIX, metric
from quantgate.gates import Outcome
from quantgate.registry import Pair

ROW_PROPERTY = "quantgate_row"
SCHEMA_VERSION = 1


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
        "verdict": outcome.verdict,
        "expect": "fail" if pair.is_canary_for(gate, _benchmark_of(outcome.metric)) else "pass",
    }


def _benchmark_of(metric_name: str) -> str | None:
    return (
        metric_name.removeprefix(RETENTION_PREFIX)
        if metric_name.startswith(RETENTION_PREFIX)
        else None
    )


def write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: (r["model"], r["compression"], r["gate"], r["metric"]))
    doc = {
        "schema_version": SCHEMA_VERSION,
        "quantgate": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
