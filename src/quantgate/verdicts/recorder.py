"""Where a gate test's results go: JUnit properties (pytest's ``record_property``), one summary
row per judged metric (a JSON property that quantgate.report.collector gathers, on the xdist
controller too), one printed line per metric; and a retention test's per-item records and
flips under reports/items/ and reports/flips/."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantgate.artifacts.cache import write_text_atomic
from quantgate.report.rows import ROW_PROPERTY
from quantgate.verdicts.gates import Outcome

if TYPE_CHECKING:
    from quantgate.evaluation.comparison import Comparison

RecordProperty = Callable[[str, object], None]


class Recorder:
    """One test's JUnit properties and printed lines."""

    def __init__(self, record_property: RecordProperty, report: Callable[[str], None] = print):
        self.record_property = record_property
        self.report = report

    def properties(self, items: list[tuple[str, object]]) -> None:
        for name, value in items:
            self.record_property(name, value)

    def not_measured(self, pair_id: str, metric: str, why: str) -> None:
        self.record_property(f"{metric}.verdict", f"not measured here: {why}")
        self.report(f"{pair_id} not measured here: {metric} ({why})")

    def note(self, pair_id: str, name: str, text: str) -> None:
        """A fact about the pair that is not a verdict (printed as a NOTE, and a property)."""
        self.report(f"{pair_id} NOTE: {text}")
        self.record_property(name, text)

    def outcome(self, pair_id: str, o: Outcome, row: dict[str, Any]) -> None:
        """A judged metric: its value, interval, threshold, power and verdict as properties,
        its summary row, and its line."""
        self.record_property(o.metric, f"{o.value:.6g}")
        if o.interval is not None:
            self.record_property(
                f"{o.metric}.ci95", f"[{o.interval.low:.6g}, {o.interval.high:.6g}]"
            )
        if o.threshold is not None:
            self.record_property(f"{o.metric}.threshold", f"{o.threshold.value:g}")
            self.record_property(f"{o.metric}.threshold_origin", o.threshold.origin)
        if o.minimum_detectable is not None:
            self.record_property(f"{o.metric}.minimum_detectable", f"{o.minimum_detectable:.4g}")
        if o.baseline is not None:
            self.record_property(f"{o.metric}.baseline", f"{o.baseline:.6g}")
        self.record_property(f"{o.metric}.verdict", o.verdict)
        self.record_property(ROW_PROPERTY, json.dumps(row))
        self.report(f"{pair_id} {o.line()}")


def write_items(reports_dir: Path, pair_id: str, comparison: Comparison) -> None:
    """reports/items/<pair>-<bench>.jsonl: every item of both runs; reports/flips/ the same
    for the items whose correctness changed, with each model's answer and margin. Written to a
    partial file and renamed: xdist workers may rewrite them."""
    name, comp = comparison.benchmark, comparison.compressed
    metric = comp.metric
    records, flipped = [], []
    for b, c in comparison.items:
        records.append(
            {
                "benchmark": name,
                "task": comp.task,
                "doc_id": b["doc_id"],
                "target": b["target"],
                "baseline": b,
                "compressed": c,
            }
        )
        if b.get(metric) in (0.0, 1.0) and c.get(metric) in (0.0, 1.0) and b[metric] != c[metric]:
            flipped.append(
                {
                    "doc_id": b["doc_id"],
                    "target": b["target"],
                    "direction": "correct->wrong" if b[metric] else "wrong->correct",
                    "baseline_answer": b.get("chosen"),
                    "compressed_answer": c.get("chosen"),
                    "baseline_margin": _margin(b),
                    "compressed_margin": _margin(c),
                }
            )
    for folder, lines in (("items", records), ("flips", flipped)):
        write_text_atomic(
            reports_dir / folder / f"{pair_id}-{name}.jsonl",
            "".join(json.dumps(r) + "\n" for r in lines),
        )


def _margin(item: dict[str, Any]) -> float | None:
    """Log-likelihood of the target choice minus the best other choice (> 0: right answer)."""
    lls, target = item.get("loglikelihoods") or [], item.get("target")
    if not isinstance(target, int) or not 0 <= target < len(lls) or len(lls) < 2:
        return None
    return lls[target] - max(v for i, v in enumerate(lls) if i != target)
