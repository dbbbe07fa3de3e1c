"""Mode sequential over chunks (quantgate.verdicts.sequential.mean_look): the asymptotic confidence
sequence of Waudby-Smith et al. (2024) on simulated per-chunk values, no model. A chunk's NLL
difference or mean KLD has no bound, so this guarantee is asymptotic: these tests measure it at
the gate's own sample sizes (wiki.test.raw: 592 chunks of 512 tokens, looks every 16) on
populations shaped like the measured ones (per-chunk KLD: coefficient of variation 0.1-0.3,
right-skewed; NLL differences: symmetric, some heavy-tailed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from quantgate.verdicts.sequential import (
    MIN_CHUNKS,
    best_rho2,
    first_mean_decisions,
    mean_look,
    mixture_radius,
)

N, BATCH, ALPHA, RUNS = 592, 16, 0.05, 1000


def _shaped(kind: str, rng: np.random.Generator, mean: float) -> np.ndarray:
    """A population of N per-chunk values with the given mean, exactly."""
    if kind == "kld-like":  # gamma with CV 0.3: right-skewed, nonnegative
        x = rng.gamma(11.0, 1.0, N)
        return x * (mean / x.mean())
    x = rng.normal(size=N) if kind == "normal" else rng.standard_t(3, N)
    return x - x.mean() + mean


def _first_decisions(pop: np.ndarray, rng: np.random.Generator, naive_z: float | None):
    """RUNS random orders of ``pop``, each gated at the population's own mean."""
    orders = np.array([rng.permutation(pop) for _ in range(RUNS)])
    return first_mean_decisions(orders, pop.mean(), BATCH, ALPHA, naive_z)


@pytest.mark.parametrize("kind", ["kld-like", "normal", "t3"])
def test_at_the_bound_it_decides_no_more_often_than_alpha_where_peeking_does(kind):
    """With the population's mean equal to the bound, any decision is the sequence excluding
    the truth: at most α of the orders (both sides together), asymptotically."""
    rng = np.random.default_rng(7)
    pop = _shaped(kind, rng, 1.0)
    mixture = _first_decisions(pop, rng, None)
    naive = _first_decisions(pop, rng, norm.ppf(1 - ALPHA / 2))
    # 1,000 orders: 3 binomial standard errors of slack on α would be 0.021; none is needed
    assert np.mean(mixture != "") <= ALPHA
    assert np.mean(naive != "") > 4 * ALPHA


def test_the_vectorised_replay_is_mean_looks_rule():
    """first_mean_decisions (the simulations' replay of many orders) decides what a loop of
    mean_look at the same looks decides, order by order, near the bound where it matters."""
    rng = np.random.default_rng(11)
    pop = _shaped("kld-like", rng, 1.0)
    orders = np.array([rng.permutation(pop) for _ in range(200)])
    seen: set[str] = set()
    for bound in (0.9, 1.0, 1.1):
        fast = first_mean_decisions(orders, bound, BATCH, ALPHA)
        seen |= set(fast)
        for row, got in zip(orders, fast, strict=True):
            want = ""
            for t in range(BATCH, N, BATCH):
                state = mean_look(row[:t], N, bound, ALPHA)
                if state.decision in ("pass", "fail"):
                    want = state.decision
                    break
            assert got == want, (bound, got, want)
    assert {"pass", "fail", ""} <= seen  # every outcome occurs: the check is not vacuous


@pytest.mark.parametrize(
    ("mean", "decision", "at_most"),
    [(0.3, "pass", 32), (3.0, "fail", 16), (0.6, "pass", 96), (1.6, "fail", 96)],
)
def test_clear_cases_stop_early(mean, decision, at_most):
    """A KLD-like population at a fraction or a multiple of the bound 1.0: decided in the
    first looks, in every one of 200 orders."""
    rng = np.random.default_rng(3)
    pop = _shaped("kld-like", rng, mean)
    for _ in range(200):
        x = rng.permutation(pop)
        for t in [*range(BATCH, N, BATCH), N]:
            state = mean_look(x[:t], N, 1.0)
            if state.decision != "continue":
                break
        assert state.decision == decision and state.n_used <= at_most, state


def test_best_rho2_is_the_mixtures_tightest_at_t_opt():
    """The closed-form ρ² (through Lambert W) against a numerical minimisation of the
    boundary at t_opt (how the authors' R package asympcs chooses it)."""
    for t_opt, alpha in ((56, 0.05), (500, 0.05), (20, 0.1)):
        numeric = minimize_scalar(
            lambda r, t=t_opt, a=alpha: float(mixture_radius(t, 1.0, a, r)),
            bounds=(1e-6, 10.0),
            method="bounded",
            options={"xatol": 1e-10},
        ).x
        assert best_rho2(t_opt, alpha) == pytest.approx(numeric, rel=1e-3)
    # the boundary itself, by hand at t = 100, ρ² = 0.1, α = 0.05: sqrt(2·11/1000·ln(√11/0.05))
    assert mixture_radius(100, 2.0, 0.05, 0.1) == pytest.approx(
        2.0 * math.sqrt(22 / 1000 * math.log(math.sqrt(11) / 0.05))
    )


def test_a_look_before_min_chunks_or_at_the_last_chunk():
    x = np.full(MIN_CHUNKS - 1, 5.0)
    early = mean_look(x, N, 1.0)
    assert early.decision == "continue" and math.isinf(early.low)
    full = mean_look(np.arange(20.0), 20, 1.0)
    assert full.decision == "exhausted" and full.low == full.high == full.estimate == 9.5
    with pytest.raises(ValueError, match=r"need 1\.\.N"):
        mean_look(np.zeros(21), 20, 1.0)
    with pytest.raises(ValueError, match=r"need 1\.\.N"):
        mean_look(np.zeros(0), 20, 1.0)
