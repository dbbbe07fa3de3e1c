"""Gate rules: compare measured values with thresholds. Pure functions, no pytest, no model,
no schema (quantgate.configuration.thresholds reads the files into the Threshold values defined
here)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from quantgate.configuration.constants import Direction, metric
from quantgate.errors import EvaluationError, GateFailure
from quantgate.verdicts.stats import Interval, minimum_detectable

GateMode = Literal["point", "ci", "strict", "sequential"]
GATE_MODES: tuple[str, ...] = ("point", "ci", "strict", "sequential")


@dataclass(frozen=True)
class Threshold:
    """A bound on one metric: its value, the gate mode (see quantgate.configuration.thresholds) and
    where it was written."""

    metric: str
    value: float
    #: file and key the value came from, for messages and reports
    origin: str
    mode: GateMode = "point"


@dataclass(frozen=True)
class Outcome:
    """One metric of one pair: what was measured, against what, and the verdict."""

    metric: str
    value: float
    threshold: Threshold | None
    baseline: float | None = None
    #: the 95 % confidence interval of ``value`` where the gate measured one (mode
    #: sequential: the confidence sequence at the stop, when it decided)
    interval: Interval | None = None
    #: mode sequential: "pass" or "fail" when the confidence sequence decided before the
    #: items ran out; None when they ran out (mode ci's rule on the interval applies)
    decision: str | None = None

    @property
    def gated(self) -> bool:
        return self.threshold is not None

    @property
    def judged_value(self) -> float:
        """The number compared with the threshold: the value (mode point), the interval's
        optimistic end (mode ci) or its pessimistic end (mode strict)."""
        if self.threshold is None or self.threshold.mode == "point":
            return self.value
        if self.interval is None:
            raise EvaluationError(
                f"{self.metric}: mode {self.threshold.mode} ({self.threshold.origin}) needs a "
                "confidence interval and none was measured"
            )
        upper_bound = metric(self.metric).direction is Direction.MAX
        optimistic = self.threshold.mode in ("ci", "sequential")
        return self.interval.low if upper_bound == optimistic else self.interval.high

    @property
    def passed(self) -> bool:
        if self.threshold is None:
            return True
        if self.threshold.mode == "sequential" and self.decision is not None:
            return self.decision == "pass"
        if metric(self.metric).direction is Direction.MAX:
            return self.judged_value <= self.threshold.value
        return self.judged_value >= self.threshold.value

    @property
    def minimum_detectable(self) -> float | None:
        """The smallest true value this gate fails with 80 % probability, from the measured
        interval's width (None without an interval or a threshold); see
        quantgate.verdicts.stats.minimum_detectable."""
        if self.threshold is None or self.interval is None:
            return None
        return minimum_detectable(
            self.threshold.value,
            self.interval.half_width,
            self.threshold.mode,
            upper_bound=metric(self.metric).direction is Direction.MAX,
        )

    @property
    def underpowered(self) -> bool:
        """A passing loss bound (an upper bound above 0) whose gate cannot see a loss of twice
        the bound: the sample is too small for the threshold. (A failure needs no power
        claim: in mode ci the loss is proven.)"""
        mdl = self.minimum_detectable
        return (
            mdl is not None
            and self.passed
            and self.threshold is not None
            and metric(self.metric).direction is Direction.MAX
            and self.threshold.value > 0
            and mdl > 2 * self.threshold.value
        )

    @property
    def verdict(self) -> str:
        return "not gated" if not self.gated else ("pass" if self.passed else "FAIL")

    def line(self) -> str:
        m = metric(self.metric)
        text = f"{self.metric} = {self.value:.6g} {m.unit}"
        if self.interval is not None:
            text += f", 95% CI [{self.interval.low:.4g}, {self.interval.high:.4g}]"
        if self.threshold is not None:
            op = "<=" if m.direction is Direction.MAX else ">="
            mode = self.threshold.mode
            what = "" if mode == "point" else f"mode {mode}: CI bound {self.judged_value:.4g} "
            if mode == "sequential" and self.decision is not None:
                what = f"mode sequential: decided {self.decision}, "
            text += f" ({what}must be {op} {self.threshold.value:g}, {self.threshold.origin})"
        if self.baseline is not None:
            text += f" [baseline {self.baseline:.6g}]"
        return f"{self.verdict:>9}: {text}"


def judge(
    gate: str,
    measured: dict[str, float],
    thresholds: dict[str, Threshold],
    baselines: dict[str, float] | None = None,
    intervals: dict[str, Interval] | None = None,
    decisions: dict[str, str] | None = None,
) -> list[Outcome]:
    """Outcomes for every measured metric of ``gate``; ``decisions``: a sequential gate's
    early "pass"/"fail", by metric.

    Raises:
        EvaluationError: a NaN or infinite measurement (never judged, never a pass).
    """
    outcomes = []
    for name, value in measured.items():
        if metric(name).gate != gate:
            raise ValueError(f"metric {name} belongs to gate {metric(name).gate}, not {gate}")
        if not math.isfinite(value):
            raise EvaluationError(f"{name} measured as {value}: the evaluation is broken")
        outcomes.append(
            Outcome(
                name,
                value,
                thresholds.get(name),
                (baselines or {}).get(name),
                (intervals or {}).get(name),
                (decisions or {}).get(name),
            )
        )
    return outcomes


def enforce(pair_id: str, gate: str, outcomes: list[Outcome]) -> None:
    """Raise one GateFailure listing every breached metric, after all were judged."""
    failed = [o for o in outcomes if not o.passed]
    if failed:
        raise GateFailure(
            f"{pair_id}: {gate} gate failed on {len(failed)} metric(s):\n"
            + "\n".join(o.line() for o in failed)
        )


def power_check(pair_id: str, o: Outcome) -> str | None:
    """The power rule, from the measured interval (the paired variance this sample shows):

    * a loss bound whose gate cannot see a loss of twice the bound (its minimum detectable
      loss, at 80 % power, lies beyond 2x the threshold) is underpowered: returns the warning
      (the judge records it, or with ``--underpowered=error`` raises it; the summary row says
      so and the terminal summary lists every such gate in one block);
    * mode strict fails when the upper bound exceeds the threshold, so with a half-width at or
      above the threshold even an identical model fails: an error, never a verdict.

    Raises:
        EvaluationError: the strict case above.
    """
    if o.threshold is None or o.interval is None:
        return None
    where = f"{o.threshold.origin}, mode {o.threshold.mode}"
    if o.threshold.mode == "strict" and o.interval.half_width >= o.threshold.value > 0:
        raise EvaluationError(
            f"{pair_id} {o.metric}: the sample gives a 95% CI half-width of "
            f"{o.interval.half_width:.3g}, not below the threshold {o.threshold.value:g} "
            f"({where}): in strict mode even an identical model would fail; raise the "
            "benchmark's limit or use mode ci"
        )
    if not o.underpowered:
        return None
    return (
        f"{pair_id} {o.metric}: underpowered: the smallest loss this sample detects (80 % power) "
        f"is {o.minimum_detectable:.3g}, beyond twice the threshold {o.threshold.value:g} "
        f"({where}); raise the benchmark's limit, gate a graded metric, or raise the threshold"
    )
