"""The judge: a pair's ``Measurement`` against its thresholds (quantgate.verdicts.gates), each
verdict recorded (quantgate.verdicts.recorder), then one failure listing every breach. It touches
nothing but thresholds, gates and the recorder: the measurement already carries its provenance."""

from __future__ import annotations

from collections.abc import Callable

from quantgate.configuration.constants import PER_BENCHMARK, split_benchmark_metric
from quantgate.configuration.registry import Pair
from quantgate.configuration.thresholds import Thresholds
from quantgate.errors import EvaluationError
from quantgate.report.rows import outcome_row
from quantgate.verdicts.gates import Outcome, enforce, judge, power_check
from quantgate.verdicts.measurement import Measurement
from quantgate.verdicts.recorder import Recorder, RecordProperty


class Judge:
    """Args:
    thresholds: the validated thresholds/ directory.
    underpowered: warn | error: what an underpowered gate does
        (quantgate.verdicts.gates.power_check).
    """

    def __init__(self, thresholds: Thresholds, underpowered: str = "warn") -> None:
        self.thresholds = thresholds
        self.underpowered = underpowered

    def check(
        self,
        pair: Pair,
        measured: Measurement,
        record_property: RecordProperty,
        report: Callable[[str], None] = print,
    ) -> None:
        """Judge every metric of ``measured``, record each (JUnit properties, a summary row, a
        printed line: quantgate.verdicts.recorder), then fail once listing every breach. A metric
        the test is responsible for whose bound was not measured is an error (a bound never judged
        is never a pass), unless the measurement names it with the reason."""
        recorder = Recorder(record_property, report)
        recorder.properties(measured.properties)
        gate = measured.gate
        bounds = self.thresholds.for_pair(pair.model_key, pair.compression_name)
        for name in measured.responsible:
            if name in bounds and name not in measured.values:
                if (undefined := measured.undefined.get(name)) is not None:
                    raise EvaluationError(
                        f"{pair.id}: {name} has a bound ({bounds[name].origin}) but {undefined}"
                        f"; to leave it ungated for this model, set {name}: null in "
                        f"{self.thresholds.directory / pair.model_key}.yaml"
                    )
                why = measured.not_measured_here.get(name)
                if why is not None:
                    recorder.not_measured(pair.id, name, why)
                    continue
                raise EvaluationError(
                    f"{pair.id}: {name} has a bound ({bounds[name].origin}) but this pair's "
                    f"{gate} test cannot measure it (for {unmeasurable_hint(name)}); "
                    "delete the key"
                )
        for name, undefined in measured.undefined.items():
            if name not in bounds:  # reported, so a reader sees why the row is missing
                text = f"{name} not judged (no bound): {undefined}"
                recorder.note(pair.id, f"{name}.verdict", text)
        outcomes = judge(
            gate,
            measured.values,
            bounds,
            measured.baselines,
            measured.intervals,
            measured.decisions,
        )
        if warning := measured.provenance.get("source_type_match"):
            recorder.note(pair.id, "source_type_match", warning)
        self.check_power(pair.id, outcomes, record_property)
        for o in outcomes:
            row = (
                outcome_row(pair, gate, o) | measured.provenance | measured.extra.get(o.metric, {})
            )
            recorder.outcome(pair.id, o, row)
        enforce(pair.id, gate, outcomes)

    def check_power(
        self, pair_id: str, outcomes: list[Outcome], record_property: RecordProperty
    ) -> None:
        """The power rule (quantgate.verdicts.gates.power_check) on each outcome: an underpowered
        gate is recorded (a JUnit property the summary lists), or with ``--underpowered=error``
        an error; a strict bound the sample's interval cannot pass is an error."""
        for o in outcomes:
            if (weak := power_check(pair_id, o)) is not None:
                record_property(f"{o.metric}.power_warning", weak)
                if self.underpowered == "error":
                    raise EvaluationError(weak + " (--underpowered=error)")


def unmeasurable_hint(name: str) -> str:
    """Why a metric may have no measurement for a pair, for the error that names its bound."""
    split = split_benchmark_metric(name)
    return "this backend or setting" if split is None else PER_BENCHMARK[split[0]].needs
