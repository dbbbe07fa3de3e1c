"""Paired statistics and gate modes: intervals, flips, McNemar, the power check's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantgate.errors import ConfigError, EvaluationError
from quantgate.verdicts.gates import Threshold, judge
from quantgate.verdicts.stats import (
    Interval,
    chunk_ratio_interval,
    expected_half_width,
    flips,
    mcnemar_exact,
    mean_interval,
    minimum_detectable,
    overall_interval,
    retention_interval,
)


def test_identical_models_have_zero_retention_loss_and_a_zero_width_interval():
    base = [1, 0, 1, 1, 0, 1, 0, 1]
    iv = retention_interval(base, base)
    assert (iv.value, iv.low, iv.high) == (0.0, 0.0, 0.0)


def test_interval_is_deterministic_and_contains_the_point():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2, 200)
    comp = np.where(rng.random(200) < 0.1, 1 - base, base)  # 10 % of items flipped
    a, b = retention_interval(base, comp), retention_interval(base, comp)
    assert a == b
    assert a.low <= a.value <= a.high
    assert a.value == pytest.approx((1 - comp.mean() / base.mean()) * 100)


def test_pairing_narrows_the_interval_against_the_unpaired_worst_case():
    # a compressed model that flips 4 % of 500 items: paired CI much narrower than the formula
    # for independent flips (which is what expected_half_width assumes)
    rng = np.random.default_rng(0)
    base = (rng.random(500) < 0.6).astype(float)
    comp = np.where(rng.random(500) < 0.04, 1 - base, base)
    iv = retention_interval(base, comp)
    assert iv.half_width < expected_half_width(500, base.mean()) / 2


def test_bootstrap_half_width_matches_the_normal_formula_for_independent_flips():
    # compressed answers independent of the baseline's: the formula's own assumption
    rng = np.random.default_rng(1)
    base = (rng.random(2000) < 0.5).astype(float)
    comp = (rng.random(2000) < 0.5).astype(float)
    iv = retention_interval(base, comp)
    assert iv.half_width == pytest.approx(expected_half_width(2000, base.mean()), rel=0.15)


def test_expected_half_width_formula():
    # z * sqrt(2 p (1-p) / n) / p * 100 at n = 40, p = 0.45
    assert expected_half_width(40, 0.45) == pytest.approx(
        1.959964 * math.sqrt(2 * 0.45 * 0.55 / 40) / 0.45 * 100, rel=1e-6
    )
    assert expected_half_width(0, 0.5) == math.inf


def test_overall_interval_is_the_mean_of_the_benchmarks():
    a = ([1, 1, 0, 1], [1, 0, 0, 1])  # D = 33.3
    b = ([0.5, 0.7, 0.6], [0.5, 0.7, 0.6])  # D = 0
    iv = overall_interval([a, b])
    assert iv.value == pytest.approx(100 / 3 / 2)
    assert iv.low <= iv.value <= iv.high


def test_zero_baseline_is_an_error_not_a_division():
    with pytest.raises(EvaluationError, match="baseline scored 0"):
        retention_interval([0, 0, 0], [1, 0, 0])
    with pytest.raises(EvaluationError, match="baseline scored 0"):
        overall_interval([([0, 0], [0, 0])])


def test_one_flip_on_a_handful_of_items_proves_no_loss():
    """One baseline-correct item of 8, missed by the variant: D is 100 %, but its interval must
    reach 0, for a third of the resamples hold no item either model scored. (Dropped, they left
    [100, 100]: a mode-ci gate failed a good Q8_0 on --limit 8.)"""
    base, comp = [1, 0, 0, 0, 0, 0, 0, 0], [0] * 8
    iv = retention_interval(base, comp)
    assert iv.value == 100.0 and iv.low == 0.0 and iv.high == 100.0
    # the same one flip among many scored items: the usual, unchanged interval
    many = retention_interval([1] * 20 + [0] * 20, [0] + [1] * 19 + [0] * 20)
    assert many.value == pytest.approx(5.0)
    assert many.low <= 0 < many.value < many.high < 20


def test_mismatched_or_empty_items_are_errors():
    with pytest.raises(EvaluationError, match="zero paired items"):
        retention_interval([], [])
    with pytest.raises(EvaluationError, match="baseline has"):
        retention_interval([1, 0], [1])
    with pytest.raises(EvaluationError, match="NaN"):
        retention_interval([1, math.nan], [1, 0])


def test_flips_and_mcnemar():
    base = [1, 1, 1, 1, 0, 0, 1, 0]
    comp = [0, 0, 1, 1, 1, 0, 1, 0]
    f = flips(base, comp)
    assert (f.correct_to_wrong, f.wrong_to_correct, f.n_items) == (2, 1, 8)
    assert f.flips_pct == pytest.approx(37.5)
    # exact two-sided binomial: P(X <= 1 | n=3) * 2 = 2 * 4/8 = 1.0
    assert f.mcnemar_p == pytest.approx(1.0)
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5**10)
    assert mcnemar_exact(0, 0) == 1.0


def test_flips_need_correct_wrong_items():
    with pytest.raises(EvaluationError, match="graded"):
        flips([0.4, 0.6], [0.5, 0.6])


def test_chunk_intervals():
    nll = [2.0, 2.1, 1.9, 2.2]
    same = chunk_ratio_interval(nll, nll)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    worse = chunk_ratio_interval(nll, [x + 0.1 for x in nll])
    assert worse.value == pytest.approx((math.exp(0.1) - 1) * 100)
    k = mean_interval([0.01, 0.02, 0.03])
    assert k.low <= 0.02 <= k.high


# -- gate modes ----------------------------------------------------------------------------------


def _judge(mode, value, low, high, limit=3.0, metric="D_hellaswag"):
    th = {metric: Threshold(metric, limit, "t.yaml:defaults", mode)}
    (o,) = judge("retention", {metric: value}, th, intervals={metric: Interval(value, low, high)})
    return o


@pytest.mark.parametrize(
    ("mode", "value", "low", "high", "passed"),
    [
        # point: the study's rule, the interval is ignored
        ("point", 4.0, 1.0, 7.0, False),
        ("point", 2.0, -1.0, 5.0, True),
        # ci: fails only when the whole interval is above the threshold
        ("ci", 4.0, 1.0, 7.0, True),
        ("ci", 6.0, 3.5, 8.5, False),
        # strict: fails when any of the interval is above it
        ("strict", 2.0, -1.0, 5.0, False),
        ("strict", 1.0, 0.0, 2.5, True),
    ],
)
def test_modes_on_an_upper_bound(mode, value, low, high, passed):
    assert _judge(mode, value, low, high).passed is passed


def test_modes_on_a_lower_bound_metric_use_the_other_end():
    # a minimum: ci passes while the interval's high end reaches the bound, strict needs the low
    th = {"kld_mean": Threshold("kld_mean", 0.1, "t", "ci")}
    (o,) = judge("kld", {"kld_mean": 0.12}, th, intervals={"kld_mean": Interval(0.12, 0.09, 0.15)})
    assert o.passed and o.judged_value == 0.09


def test_ci_mode_without_an_interval_is_an_error():
    th = {"D_hellaswag": Threshold("D_hellaswag", 3.0, "t.yaml:defaults", "ci")}
    (o,) = judge("retention", {"D_hellaswag": 1.0}, th)
    with pytest.raises(EvaluationError, match="needs a confidence interval"):
        _ = o.passed


def _thresholds(tmp_path, text):
    from quantgate.configuration.registry import load_registry
    from quantgate.configuration.thresholds import Thresholds
    from support.helpers import REPO, with_retention_bounds

    d = tmp_path / "thresholds"
    d.mkdir()
    (d / "default.yaml").write_text(with_retention_bounds(text))
    return Thresholds(d, load_registry(REPO / "fixtures" / "models.yaml"))


def test_threshold_yaml_takes_a_mode(tmp_path):
    t = _thresholds(tmp_path, "defaults:\n  D_hellaswag: {value: 5, mode: ci}\n  kld_mean: 0.1\n")
    pair = t.for_pair("smollm2", "Q8_0")
    assert (pair["D_hellaswag"].value, pair["D_hellaswag"].mode) == (5.0, "ci")
    assert pair["kld_mean"].mode == "point"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "defaults:\n  D_hellaswag: {value: 5, mode: cl}\n",
            "'cl' is not a gate mode; valid: point, ci, strict",
        ),
        ("defaults:\n  tg_tps_ratio: {value: 0.8, mode: ci}\n", "tg_tps_ratio does not have"),
        ("defaults:\n  D_hellaswag: {max: 5}\n", "expected a number or {value"),
        ("defaults:\n  flips_hellaswg: 5\n", "unknown threshold key 'flips_hellaswg'"),
    ],
)
def test_bad_modes_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as exc:
        _thresholds(tmp_path, text)
    assert "default.yaml" in str(exc.value) and "\n" not in str(exc.value)


def _power(mode, half_width, limit=10.0, action="warn"):
    from quantgate.verdicts.gates import Outcome
    from quantgate.verdicts.judge import Judge
    from quantgate.verdicts.stats import Interval

    outcome = Outcome(
        "D_hellaswag",
        1.0,
        Threshold("D_hellaswag", limit, "t.yaml:defaults", mode),
        interval=Interval(1.0, 1.0 - half_width, 1.0 + half_width),
    )
    recorded = []
    Judge(None, action).check_power("smollm2-Q8_0", [outcome], lambda k, v: recorded.append(k))
    return recorded


def test_minimum_detectable_loss_follows_the_mode():
    # se = 1.96 / 1.96 = 1: point needs z_0.8 = 0.84 beyond the bound, ci 1.96 + 0.84 more,
    # strict fails 1.96 - 0.84 before it
    assert minimum_detectable(10, 1.96, "point") == pytest.approx(10.842, abs=1e-3)
    assert minimum_detectable(10, 1.96, "ci") == pytest.approx(12.802, abs=1e-3)
    assert minimum_detectable(10, 1.96, "strict") == pytest.approx(8.882, abs=1e-3)
    # a lower bound (top-1 agreement >= 80): detectable losses lie below it
    assert minimum_detectable(80, 1.96, "ci", upper_bound=False) == pytest.approx(77.198, abs=1e-3)


def test_minimum_detectable_loss_is_what_the_gate_fails_80_percent_of_the_time():
    # simulate the ci-mode gate on normal estimates around the minimum detectable value
    rng = np.random.default_rng(3)
    se, bound = 2.0, 10.0
    mdl = minimum_detectable(bound, 1.959964 * se, "ci")
    estimates = rng.normal(mdl, se, 20000)
    fails = (estimates - 1.959964 * se) > bound
    assert fails.mean() == pytest.approx(0.80, abs=0.01)


def test_power_check_from_the_measured_interval(recwarn):
    # mode ci, threshold 10: half-width 4 gives a minimum detectable loss of 15.7: silent
    assert _power("ci", 4.0) == []
    # recorded, not warned: the terminal summary lists every underpowered gate in one block
    assert _power("ci", 48.5) == ["D_hellaswag.power_warning"]
    with pytest.raises(EvaluationError, match="--underpowered=error"):
        _power("ci", 48.5, action="error")
    with pytest.raises(EvaluationError, match="in strict mode even an identical model would fail"):
        _power("strict", 48.5)
    # point mode: 10 + 0.84 * 48.5 / 1.96 = 30.8, beyond 20: underpowered too
    assert _power("point", 48.5) == ["D_hellaswag.power_warning"]
    assert _power("point", 4.0) == []
    assert not recwarn.list


def test_flip_rate_interval_is_exact():
    from quantgate.verdicts.stats import proportion_interval

    iv = proportion_interval(6, 40)
    # Clopper-Pearson for 6/40 (scipy's binomtest, method exact)
    assert (iv.value, round(iv.low, 2), round(iv.high, 2)) == (15.0, 5.71, 29.84)
    assert proportion_interval(0, 40).low == 0.0 and proportion_interval(0, 40).high > 8


def test_graded_choice_signals():
    from quantgate.verdicts.stats import choice_kld, gold_probability

    lls = [-10.0, -11.0, -12.0, -13.0]
    assert gold_probability(lls, 0) == pytest.approx(np.exp(0) / np.exp([0, -1, -2, -3]).sum())
    assert choice_kld(lls, lls) == 0.0  # identical answers: exactly 0
    assert choice_kld(lls, [-13.0, -12.0, -11.0, -10.0]) > 1.0


def test_choice_kld_stays_finite_when_a_damaged_model_makes_a_choice_vanish():
    """Endings of a wrecked model can differ by more than exp() holds (~745 nats summed over
    an ending): the divergence is large, never inf (inf would read as a broken evaluation)."""
    from quantgate.verdicts.stats import choice_kld

    kld = choice_kld([-10.0, -11.0, -12.0, -13.0], [-10.0, -2000.0, -12.0, -13.0])
    assert math.isfinite(kld) and kld > 400
    assert choice_kld([-1000.0, -10.0], [-10.0, -1000.0]) == pytest.approx(990.0)
