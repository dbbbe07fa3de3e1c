"""docs/gates.md "Adding a gate metric", followed: one ``Metric`` entry in
quantgate.configuration.constants.METRICS names the metric, its gate, direction and unit; the gate's
evaluator computes its value. With the entry alone, thresholds accept the key and a bound on it is
an error naming it (never a pass); once the evaluator computes it, the judge judges it, records
its summary row and fails the pair on it, and the report shows it. Nothing else is edited."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import yaml

from quantgate.configuration import constants
from quantgate.configuration.constants import Direction, Metric
from quantgate.configuration.registry import QScoreWeights, load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.errors import ConfigError, EvaluationError, GateFailure
from quantgate.report.rows import ROW_PROPERTY
from quantgate.report.tables import build_tables
from quantgate.verdicts import measurement
from quantgate.verdicts.judge import Judge
from quantgate.verdicts.stats import Interval
from support.helpers import REPO

KLD_P90 = Metric("kld_p90", "kld", Direction.MAX, "nats", "90th percentile of the per-token KLD")


@pytest.fixture
def registry():
    return load_registry(REPO / "fixtures" / "models.yaml")


def _thresholds(tmp_path, registry, bound: float) -> Thresholds:
    """The shipped thresholds with ``kld_p90: bound`` added to default.yaml's defaults."""
    folder = tmp_path / "thresholds"
    shutil.copytree(REPO / "thresholds", folder)
    doc = yaml.safe_load((folder / "default.yaml").read_text())
    doc["defaults"]["kld_p90"] = bound
    (folder / "default.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return Thresholds(folder, registry)


def _kld(**metrics: float) -> measurement.Measurement:
    """The kld gate's measurement from an evaluator result holding ``metrics``."""
    values = {"kld_mean": 0.004, "kld_p99": 0.02, "top1_agreement_pct": 95.6, **metrics}  # Q8_0
    # the shipped bounds on these are in mode ci: they need their intervals
    intervals = {k: Interval(v, 0.9 * v, 1.1 * v) for k, v in values.items() if k != "kld_p90"}
    result = SimpleNamespace(metrics=values, intervals=intervals, sequential=None)
    return measurement.kld(result)


def _check(thresholds, registry, measured) -> list[dict]:
    """The judge's verdicts on ``measured`` for smollm2-Q8_0: the summary rows it recorded."""
    pair = registry.pairs(["smollm2"], ["Q8_0"])[0]
    rows: list[dict] = []

    def record(key: str, value: object) -> None:
        if key == ROW_PROPERTY:
            rows.append(json.loads(str(value)))

    Judge(thresholds).check(pair, measured, record, report=lambda line: None)
    return rows


def test_without_its_catalogue_entry_the_key_is_a_typo(tmp_path, registry):
    with pytest.raises(ConfigError, match="kld_p90"):
        _thresholds(tmp_path, registry, 0.5)


def test_an_entry_whose_evaluator_does_not_compute_it_is_an_error_never_a_pass(
    tmp_path, registry, monkeypatch
):
    monkeypatch.setitem(constants.METRICS, "kld_p90", KLD_P90)
    thresholds = _thresholds(tmp_path, registry, 0.5)
    with pytest.raises(EvaluationError, match=r"kld_p90 has a bound .* cannot measure it"):
        _check(thresholds, registry, _kld())


def test_once_computed_it_is_judged_recorded_and_reported(tmp_path, registry, monkeypatch):
    monkeypatch.setitem(constants.METRICS, "kld_p90", KLD_P90)
    thresholds = _thresholds(tmp_path, registry, 0.5)
    rows = _check(thresholds, registry, _kld(kld_p90=0.3))
    (row,) = [r for r in rows if r["metric"] == "kld_p90"]
    assert row["verdict"] == "pass" and row["threshold"] == 0.5 and row["gate"] == "kld"
    with pytest.raises(GateFailure, match="kld_p90"):
        _check(thresholds, registry, _kld(kld_p90=0.7))
    # the report: the pair's row of the metric, and its verdict, without a report edit
    failing = dict(row, value=0.7, verdict="FAIL")
    (summary,) = [
        s for s in build_tables([failing], QScoreWeights())["smollm2"] if not s.is_baseline
    ]
    assert summary.cells["kld_p90"].failed and summary.verdict == "FAIL"
