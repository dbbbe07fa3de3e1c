"""The sequential gate's statistics (quantgate.verdicts.sequential), on simulated paired items: no
model. What the guarantee promises (Waudby-Smith & Ramdas's betting confidence sequence for
sampling without replacement): at a loss equal to the threshold, the gate stops on the wrong
side at most α/2 of the time at any batch schedule, where naive peeking at a fixed-sample
interval after each batch does not; and clear cases stop early."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from quantgate.verdicts.sequential import log_capitals, paired_terms, sequential_retention

THRESHOLD = 5.0


def population(n: int, both: int, baseline_only: int, compressed_only: int):
    """Per-item correctness of a baseline and a compressed model over ``n`` items."""
    b, c = np.zeros(n), np.zeros(n)
    b[: both + baseline_only] = 1
    c[:both] = 1
    c[both + baseline_only : both + baseline_only + compressed_only] = 1
    return b, c


def _first(hit: np.ndarray) -> np.ndarray:
    return np.where(hit.any(axis=1), hit.argmax(axis=1), hit.shape[1])


def _stops(b, c, runs: int, batch: int, alpha: float, seed: int):
    """Per run, the look at which the betting gate and a naive gate first said fail/pass."""
    rng = np.random.default_rng(seed)
    n = len(b)
    order = np.array([rng.permutation(n) for _ in range(runs)])
    bb, cc = b[order], c[order]
    looks = np.arange(batch, n + 1, batch)
    above, below = log_capitals((bb * (1 - THRESHOLD / 100) - cc + 1) / 2, n, 0.5, alpha)
    bar = math.log(2 / alpha)
    betting = _first(above[:, looks - 1] >= bar), _first(below[:, looks - 1] >= bar)
    # naive: the fixed-sample normal interval of the paired mean, looked at after each batch
    z = bb * (1 - THRESHOLD / 100) - cc
    total, squares = np.cumsum(z, axis=1)[:, looks - 1], np.cumsum(z * z, axis=1)[:, looks - 1]
    mean = total / looks
    se = np.sqrt((squares / looks - mean**2) / (looks - 1))
    q = norm.ppf(1 - alpha / 2)
    naive = _first(mean - q * se > 0), _first(mean + q * se < 0)
    return betting, naive


def test_at_the_threshold_it_fails_a_good_model_no_more_than_promised_where_peeking_does():
    # D is exactly 5 %: 4,500 baseline-correct items of 10,042, 4,275 compressed-correct
    b, c = population(10_042, both=4_100, baseline_only=400, compressed_only=175)
    assert (1 - c.sum() / b.sum()) * 100 == pytest.approx(THRESHOLD)
    (fail, passed), (naive_fail, naive_pass) = _stops(b, c, 1000, 100, 0.05, seed=7)
    false_fail = np.mean(fail < passed)
    naive_false_fail = np.mean(naive_fail < naive_pass)
    assert false_fail <= 0.025  # α/2: the fail side of a two-sided 95 % sequence
    assert naive_false_fail > 0.05  # peeking after each of 100 batches: measured 0.098 here


def test_the_sequence_never_excludes_the_true_loss_in_95_percent_of_orders():
    """Time-uniform coverage: over every look at once, not at one look."""
    b, c = population(4_000, both=1_600, baseline_only=300, compressed_only=100)
    truth = (1 - c.sum() / b.sum()) * 100  # 10.5 %
    rng = np.random.default_rng(3)
    order = np.array([rng.permutation(len(b)) for _ in range(1000)])
    y = paired_terms(b, c, np.array([truth]))[0][order]
    above, below = log_capitals(y, len(b), 0.5, 0.05)
    ever_excluded = ((above >= math.log(2 / 0.05)) | (below >= math.log(2 / 0.05))).any(axis=1)
    assert ever_excluded.mean() <= 0.05


@pytest.mark.parametrize(
    ("case", "split", "decision", "at_most"),
    [
        ("Q8_0-like: nothing lost", (4_100, 150, 150), "pass", 0.30),
        ("Q2_K-like: 21 % lost", (4_100, 1_500, 300), "fail", 0.30),
        ("at the threshold", (4_100, 400, 175), None, 1.0),
    ],
)
def test_clear_cases_stop_early(case, split, decision, at_most):
    b, c = population(10_042, *split)
    order = np.random.default_rng(11).permutation(len(b))
    v = sequential_retention(b[order], c[order], THRESHOLD)
    if decision is not None:
        assert v.decision == decision, (case, v)
    assert v.n_used <= at_most * v.n_available, (case, v)
    assert v.low <= v.estimate <= v.high or v.decision == "exhausted"
    assert str(v.n_available) in v.reason


def test_a_null_made_impossible_by_what_was_seen_is_rejected_outright():
    # 10 items, the null mean of y is 0.3: after seeing four 1s the population mean is ≥ 0.4
    y = np.array([1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0, 0, 0])
    above, below = log_capitals(y, 10, 0.3, 0.05)
    assert np.isinf(above[3:]).all() and np.isfinite(above[:3]).all()
    assert np.isfinite(below).all()
    # and the terms map D ≤ θ onto mean(y) ≤ 1/2
    b, c = np.array([1.0, 1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0, 1.0])
    y = paired_terms(b, c, np.array([100 / 3]))
    assert y.mean() == pytest.approx(0.5)  # D = 1/3 exactly at θ = 33.3 %


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="need the same"):
        sequential_retention(np.ones(3), np.ones(4), THRESHOLD)
    with pytest.raises(ValueError, match="of a population of 2"):
        log_capitals(np.ones(3), 2, 0.5, 0.05)


def test_the_driver_scores_in_the_seeded_order_and_keeps_each_bounds_first_stop():
    """quantgate.verdicts.sequential.drive, the loop both sequential gates (items, chunks) run:
    batches in item_order's order, a look after each for the bounds still open, a bound's first
    deciding verdict kept, and no batch scored once every bound has one."""
    from quantgate.verdicts.sequential import SequentialVerdict, drive, item_order

    scored: list[list[int]] = []
    looked: list[list[str]] = []
    # "a" decides after the second batch, "b" only at the last item (exhausted)
    decide = {"a": 2, "b": 4}

    def look_open(names):
        looked.append(sorted(names))
        t = len(scored)
        return {
            n: SequentialVerdict(
                "exhausted" if t == 4 else "pass" if t >= decide[n] else "continue",
                t * 3,
                10,
                0.0,
                1.0,
                0.5,
            )
            for n in names
        }

    said: list[str] = []
    stops = drive(10, 3, scored.append, look_open, ["a", "b"], lambda n, s: said.append(n))
    assert [i for b in scored for i in b] == item_order(10)  # every item once, in order
    assert [len(b) for b in scored] == [3, 3, 3, 1]
    assert looked == [["a", "b"], ["a", "b"], ["b"], ["b"]]  # "a" is not looked at again
    assert stops["a"].decision == "pass" and stops["a"].n_used == 6
    assert stops["b"].decision == "exhausted"
    assert said == ["a", "b", "a", "b", "b", "b"]

    scored.clear()
    early = drive(
        10,
        3,
        scored.append,
        lambda names: {n: look_open([n])[n] for n in names},
        ["a"],
        lambda *_: None,
    )
    assert len(scored) == 2 and early["a"].n_used == 6  # nothing scored after the last stop
    with pytest.raises(ValueError, match="batches of 0"):
        drive(10, 0, scored.append, look_open, ["a"], lambda *_: None)
