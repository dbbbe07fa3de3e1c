"""Gate rules: directions, NaN handling, and one failure listing every breach."""

from __future__ import annotations

import math

import pytest

from quantgate.errors import EvaluationError, GateFailure
from quantgate.verdicts.gates import Threshold, enforce, judge


def th(metric, value):
    return {metric: Threshold(metric, value, "test.yaml:defaults")}


@pytest.mark.parametrize(
    ("metric", "limit", "value", "passed"),
    [
        # max metrics: at the bound passes, above fails
        ("ppl_increase_pct", 5.0, 5.0, True),
        ("ppl_increase_pct", 5.0, 5.0001, False),
        # min metrics: at the bound passes, below fails
        ("top1_agreement_pct", 90.0, 90.0, True),
        ("top1_agreement_pct", 90.0, 89.99, False),
        ("tg_tps_ratio", 0.8, 0.79, False),
    ],
)
def test_direction(metric, limit, value, passed):
    gate = {
        "ppl_increase_pct": "perplexity",
        "top1_agreement_pct": "kld",
        "tg_tps_ratio": "throughput",
    }[metric]
    (outcome,) = judge(gate, {metric: value}, th(metric, limit))
    assert outcome.passed is passed
    assert outcome.verdict == ("pass" if passed else "FAIL")


def test_ungated_metric_is_reported_not_judged():
    (outcome,) = judge("kld", {"kld_p99": 9.0}, {})
    assert outcome.passed and outcome.verdict == "not gated"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_measurement_is_an_error_not_a_verdict(bad):
    with pytest.raises(EvaluationError, match="kld_mean measured as"):
        judge("kld", {"kld_mean": bad}, th("kld_mean", 0.1))


def test_enforce_lists_every_breach_once():
    outcomes = judge(
        "kld",
        {"kld_mean": 0.5, "kld_p99": 3.0, "top1_agreement_pct": 99.0},
        {**th("kld_mean", 0.1), **th("kld_p99", 1.0), **th("top1_agreement_pct", 90.0)},
    )
    with pytest.raises(GateFailure) as exc:
        enforce("m-Q", "kld", outcomes)
    text = str(exc.value)
    assert "failed on 2 metric(s)" in text
    assert "kld_mean = 0.5 nats (must be <= 0.1, test.yaml:defaults)" in text
    assert "top1_agreement_pct" not in text


def test_metric_of_another_gate_is_a_programming_error():
    with pytest.raises(ValueError, match="belongs to gate perplexity"):
        judge("kld", {"ppl_increase_pct": 1.0}, {})
