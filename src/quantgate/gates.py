"""Gate rules: compare measured values with thresholds. Pure functions, no pytest, no model."""

from __future__ import annotations

import math
from dataclasses import dataclass

from quantgate.constants import Direction, metric
from quantgate.errors import EvaluationError, GateFailure
from quantgate.thresholds import Threshold


@dataclass(frozen=True)
class Outcome:
    """One metric of one pair: what was measured, against what, and the verdict."""

    metric: str
    value: float
    threshold: Threshold | None
    baseline: float | None = None

    @property
    def gated(self) -> bool:
        return self.threshold is not None

    @property
    def passed(self) -> bool:
        if self.threshold is None:
            return True
        if metric(self.metric).direction is Direction.MAX:
            return self.value <= self.threshold.value
        return self.value >= self.threshold.value

    @property
    def verdict(self) -> str:
        return "not gated" if not self.gated else ("pass" if self.passed else "FAIL")

    def line(self) -> str:
        m = metric(self.metric)
        text = f"{self.metric} = {self.value:.6g} {m.unit}"
        if self.threshold is not None:
            op = "<=" if m.direction is Direction.MAX else ">="
            text += f" (must be {op} {self.threshold.value:g}, {self.threshold.origin})"
        if self.baseline is not None:
            text += f" [baseline {self.baseline:.6g}]"
        return f"{self.verdict:>9}: {text}"


def judge(
    gate: str,
    measured: dict[str, float],
    thresholds: dict[str, Threshold],
    baselines: dict[str, float] | None = None,
) -> list[Outcome]:
    """Outcomes for every measured metric of ``gate``.

    Raises:
        EvaluationError: a NaN or infinite measurement (never judged, never a pass).
    """
    outcomes = []
    for name, value in measured.items():
        if metric(name).gate != gate:
            raise ValueError(f"metric {name} belongs to gate {metric(name).gate}, not {gate}")
        if not math.isfinite(value):
            raise EvaluationError(f"{name} measured as {value}: the evaluation is broken")
        outcomes.append(Outcome(name, value, thresholds.get(name), (baselines or {}).get(name)))
    return outcomes


def enforce(pair_id: str, gate: str, outcomes: list[Outcome]) -> None:
    """Raise one GateFailure listing every breached metric, after all were judged."""
    failed = [o for o in outcomes if not o.passed]
    if failed:
        raise GateFailure(
            f"{pair_id}: {gate} gate failed on {len(failed)} metric(s):\n"
            + "\n".join(o.line() for o in failed)
        )
