"""Anytime-valid confidence sequences for a retention loss over a fixed item set, sampled in
a random order without replacement: the statistics of a gate that stops once its verdict is
decided (plain numpy; no model, no pytest).

The construction is the betting confidence sequence for sampling without replacement of
Waudby-Smith & Ramdas, "Confidence sequences for sampling without replacement" (NeurIPS 2020,
§3, the "hedged" capital process with predictable plug-in bets; the bets are their
"predictable plug-in" λ of "Estimating means of bounded random variables by betting", JRSS-B
2024, eq. 26). It is exact for the population the full evaluation would score: the items of
the benchmark, each seen at most once.

The quantity. With per-item scores ``b_j`` (baseline) and ``c_j`` (compressed) in [0, 1] over
N items, retention loss D = (1 − Σc/Σb)·100. "D ≤ θ" is "the mean of z_j(θ) ≤ 0" where
z_j(θ) = b_j·(1 − θ/100) − c_j ∈ [−1, 1]: a mean of bounded paired terms, which is what the
betting processes test. Each θ of a grid gets two one-sided capital processes on
y = (z + 1)/2 ∈ [0, 1], both at the null "the population mean of z(θ) is 0":

- ``above`` bets that D > θ (y above its null mean), ``below`` that D < θ;
- under WoR the null mean of the next item is m_t = (N·m − S_{t−1})/(N − t + 1), which makes
  each capital a nonnegative supermartingale under its (composite, one-sided) null, so by
  Ville's inequality it ever reaches 2/α with probability at most α/2.

The (1 − α) confidence sequence for D at time t is every θ that neither process has rejected;
the gate stops "pass" once ``below`` at its threshold reaches 2/α, "fail" once ``above`` does.
The probability that it ever stops on the wrong side of a D equal to its threshold is at most
α/2, at every batch schedule and every stopping rule built on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the largest fraction of the capital one bet may risk (WSR's c; 1/2 as in their experiments)
BET_CAP = 0.5


def _plug_in_bets(y: np.ndarray, alpha: float) -> np.ndarray:
    """WSR's predictable plug-in λ_t (eq. 26, JRSS-B 2024): from items 1..t−1 only.
    ``y``: (..., T) in [0, 1]. Returns (..., T), before the per-side cap."""
    t = np.arange(1, y.shape[-1] + 1, dtype=np.float64)
    # the running mean and variance through t−1, with WSR's priors 1/2 and 1/4
    csum = np.cumsum(y, axis=-1)
    mu = (0.5 + csum) / (t + 1)  # μ̂_t through item t
    mu_prev = np.concatenate([np.full((*y.shape[:-1], 1), 0.5), mu[..., :-1]], axis=-1)
    sq = np.cumsum((y - mu_prev) ** 2, axis=-1)
    var = (0.25 + sq) / (t + 1)
    var_prev = np.concatenate([np.full((*y.shape[:-1], 1), 0.25), var[..., :-1]], axis=-1)
    return np.sqrt(2 * math.log(2 / alpha) / (var_prev * t * np.log1p(t)))


def log_capitals(
    y: np.ndarray, n_population: int, null_mean: float | np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """The two one-sided WoR betting processes for the population mean of ``y`` ∈ [0, 1].

    Args:
        y: (..., T) the first T of N items in their sampled order.
        n_population: N, the number of items the full evaluation scores.
        null_mean: the null population mean m (broadcast against y[..., 0]).
        alpha: the confidence sequence's level (each side at α/2).

    Returns:
        (log K_above, log K_below), each (..., T): the log-capital after each item of a bettor
        on "mean > m" and on "mean < m"; +inf once the null is impossible given what was seen.
    """
    t_count = y.shape[-1]
    if t_count > n_population:
        raise ValueError(f"{t_count} items seen of a population of {n_population}")
    m = np.asarray(null_mean, dtype=np.float64)[..., None]
    t = np.arange(1, t_count + 1, dtype=np.float64)
    seen = np.cumsum(y, axis=-1)
    seen_before = np.concatenate([np.zeros((*y.shape[:-1], 1)), seen[..., :-1]], axis=-1)
    # the mean the remaining items must have for the population mean to be m
    m_t = (n_population * m - seen_before) / (n_population - t + 1)
    lam = _plug_in_bets(y, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam_above = np.minimum(lam, BET_CAP / np.clip(m_t, 1e-12, None))
        lam_below = np.minimum(lam, BET_CAP / np.clip(1 - m_t, 1e-12, None))
        step_above = np.log1p(lam_above * (y - m_t))
        step_below = np.log1p(-lam_below * (y - m_t))
    # a null mean the remaining items cannot reach (m_t outside [0, 1]) makes no bet...
    outside = (m_t < 0) | (m_t > 1)
    above = np.cumsum(np.where(outside, 0.0, step_above), axis=-1)
    below = np.cumsum(np.where(outside, 0.0, step_below), axis=-1)
    # ...it is rejected outright: what was seen exceeds N·m (the mean is above m for certain),
    # or cannot reach it even if every remaining item scored 1 (below m for certain)
    # (with a tolerance for the float sums: a population exactly at m is no certainty)
    slack = 1e-9 * n_population
    certainly_above = seen > n_population * m + slack
    certainly_below = seen + (n_population - t) < n_population * m - slack
    return np.where(certainly_above, np.inf, above), np.where(certainly_below, np.inf, below)


def paired_terms(baseline: np.ndarray, compressed: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """y_j(θ) = (b_j·(1 − θ/100) − c_j + 1)/2 ∈ [0, 1]: mean(y) ≤ 1/2 ⇔ D ≤ θ. (G, T) for a
    grid θ of G values and T items."""
    scale = 1 - np.asarray(theta, dtype=np.float64)[:, None] / 100
    return (baseline[None, :] * scale - compressed[None, :] + 1) / 2


@dataclass(frozen=True)
class SequentialVerdict:
    """Where a sequential gate stopped and why."""

    #: "pass", "fail", "exhausted" (the items ran out: the fixed-sample verdict applies), or
    #: "continue" (a look between batches that decided nothing)
    decision: str
    n_used: int
    n_available: int
    #: the (1 − α) confidence sequence for D at the stop (grid resolution)
    low: float
    high: float
    #: D on the items used
    estimate: float

    @property
    def reason(self) -> str:
        if self.decision == "exhausted":
            return f"all {self.n_available} items used: the fixed-sample verdict applies"
        if self.decision == "continue":
            return f"undecided after {self.n_used} of {self.n_available} items"
        side = "below" if self.decision == "pass" else "above"
        return (
            f"the confidence sequence lies wholly {side} the threshold after "
            f"{self.n_used} of {self.n_available} items"
        )


def retention_loss(baseline: np.ndarray, compressed: np.ndarray) -> float:
    total = float(np.sum(baseline))
    return (1 - float(np.sum(compressed)) / total) * 100 if total > 0 else math.nan


#: the order the items are scored in: one seeded permutation, the same on every machine
ORDER_SEED = 20201206


def item_order(n_population: int, seed: int = ORDER_SEED) -> list[int]:
    """The uniformly random order a sequential gate scores ``n_population`` items in."""
    return [int(i) for i in np.random.default_rng(seed).permutation(n_population)]


def _grid_with(threshold: float, grid: np.ndarray | None) -> np.ndarray:
    grid = np.linspace(-100, 100, 401) if grid is None else np.asarray(grid, dtype=np.float64)
    return np.concatenate([[threshold], grid])


def _state(
    thetas: np.ndarray,
    above: np.ndarray,
    below: np.ndarray,
    i: int,
    n: int,
    alpha: float,
    b: np.ndarray,
    c: np.ndarray,
) -> SequentialVerdict:
    """The gate after item ``i`` (0-based) of ``n``; row 0 of the processes is the threshold."""
    bar = math.log(2 / alpha)
    estimate = retention_loss(b[: i + 1], c[: i + 1])
    if i + 1 == n:  # every item seen: D is known exactly, the fixed-sample verdict applies
        return SequentialVerdict("exhausted", n, n, estimate, estimate, estimate)
    decision = "pass" if below[0, i] >= bar else "fail" if above[0, i] >= bar else "continue"
    grid = thetas[1:]
    kept = grid[(above[1:, i] < bar) & (below[1:, i] < bar)]
    # between two grid points the sequence may be narrower than the grid: then the estimate
    low, high = (float(kept.min()), float(kept.max())) if kept.size else (estimate, estimate)
    return SequentialVerdict(decision, i + 1, n, low, high, estimate)


def look(
    baseline_seen: np.ndarray,
    compressed_seen: np.ndarray,
    n_population: int,
    threshold: float,
    alpha: float = 0.05,
    grid: np.ndarray | None = None,
) -> SequentialVerdict:
    """The gate after the items scored so far, in their sampled order (a look between
    batches): "pass"/"fail" once decided, else "continue", or "exhausted" at the last item."""
    b = np.asarray(baseline_seen, dtype=np.float64)
    c = np.asarray(compressed_seen, dtype=np.float64)
    if not 0 < len(b) == len(c) <= n_population:
        raise ValueError(
            f"{len(b)} baseline and {len(c)} compressed items of {n_population}: need the same, > 0"
        )
    thetas = _grid_with(threshold, grid)
    above, below = log_capitals(paired_terms(b, c, thetas), n_population, 0.5, alpha)
    return _state(thetas, above, below, len(b) - 1, n_population, alpha, b, c)


def sequential_retention(
    baseline: np.ndarray,
    compressed: np.ndarray,
    threshold: float,
    alpha: float = 0.05,
    batch: int = 100,
    grid: np.ndarray | None = None,
) -> SequentialVerdict:
    """Judge "D ≤ threshold" on a whole population already in its sampled order, looking
    after every ``batch`` items (what the gate does one batch at a time with ``look``)."""
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(compressed, dtype=np.float64)
    n = len(b)
    if n == 0 or len(c) != n:
        raise ValueError(f"{n} baseline and {len(c)} compressed items: need the same, > 0")
    thetas = _grid_with(threshold, grid)
    above, below = log_capitals(paired_terms(b, c, thetas), n, 0.5, alpha)
    for t in [*range(batch, n, batch), n]:
        state = _state(thetas, above, below, t - 1, n, alpha, b, c)
        if state.decision != "continue":
            return state
    raise AssertionError("unreachable: the last look is at n")  # pragma: no cover


def drive(
    n_population: int,
    batch: int,
    score_batch: Callable[[list[int]], None],
    look_open: Callable[[Collection[str]], dict[str, SequentialVerdict]],
    bounds: Collection[str],
    say: Callable[[str, SequentialVerdict], None],
) -> dict[str, SequentialVerdict]:
    """The one loop of every sequential gate (a benchmark's items, the evaluation text's
    chunks): the population in its seeded order (``item_order``), ``batch`` at a time.
    ``score_batch(ids)`` scores one batch (the caller keeps what it scored, each batch cached
    as it goes); ``look_open(names)`` judges each bound still open on everything scored so
    far; ``say`` prints a look's progress line. A bound keeps the verdict of its first deciding
    look, and the loop stops once every bound has one: at the latest at the last item, where
    the look is "exhausted" (the fixed-sample verdict). Returns each bound's stop."""
    if n_population < 1 or batch < 1:
        raise ValueError(f"a sequential gate over {n_population} items in batches of {batch}")
    order = item_order(n_population)
    stops: dict[str, SequentialVerdict] = {}
    for start in range(0, n_population, batch):
        score_batch(order[start : start + batch])
        for name, state in look_open([b for b in bounds if b not in stops]).items():
            say(name, state)
            if state.decision != "continue":
                stops[name] = state
        if len(stops) == len(bounds):
            break
    return stops


# -- unbounded per-chunk means (PPL increase, mean KLD) ----------------------------------------
#
# A chunk's NLL difference or mean KLD has no a-priori bound, so the betting processes above
# (which need values in a known interval) do not apply. These gates use the asymptotic
# confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas, "Time-uniform central
# limit theory and asymptotic confidence sequences" (Annals of Statistics 2024, Theorem 2.2):
# the Gaussian-mixture boundary with the running sample standard deviation,
#
#     μ̂_t ± σ̂_t · sqrt( 2(tρ² + 1) / (t²ρ²) · log( sqrt(tρ² + 1) / α ) ),
#
# with ρ² chosen to make it tightest at t_opt: setting the derivative in u = t_opt·ρ² + 1 to 0
# gives u − ln u = 1 − 2 ln α, so ρ² = (−W₋₁(−α²/e) − 1) / t_opt (W₋₁: the Lambert W
# function's lower branch). It covers the mean at every t at once with
# probability at least 1 − α as the sample grows, for i.i.d. values with a finite variance:
# an *asymptotic* guarantee (the betting sequence above is exact at every sample size). Chunks
# drawn in a random order without replacement vary less than i.i.d. draws, which only narrows
# the truth around the estimate. The simulation in tests/unit/test_sequential.py measures the
# false-alarm rate at this gate's sample sizes on skewed, heavy-tailed chunk populations.

#: a look decides nothing before this many chunks: the sample variance is the CLT's input
MIN_CHUNKS = 8


def best_rho2(t_opt: float, alpha: float) -> float:
    """The mixture's ρ² that minimises the boundary at ``t_opt`` (Waudby-Smith et al. 2024)."""
    from scipy.special import lambertw

    w = lambertw(-(alpha**2) / math.e, k=-1).real
    return float((-w - 1) / t_opt)


def mixture_radius(t: np.ndarray | int, sd: np.ndarray | float, alpha: float, rho2: float) -> Any:
    """The asymptotic confidence sequence's half-width after ``t`` values of sample s.d. ``sd``."""
    t = np.asarray(t, dtype=np.float64)
    return np.asarray(sd) * np.sqrt(
        2 * (t * rho2 + 1) / (t**2 * rho2) * np.log(np.sqrt(t * rho2 + 1) / alpha)
    )


def default_t_opt(n_population: int) -> float:
    """Where the sequence is tightest: a tenth of the chunks, where a clear case should stop."""
    return max(MIN_CHUNKS, n_population / 10)


def mean_look(
    seen: np.ndarray,
    n_population: int,
    threshold: float,
    alpha: float = 0.05,
    t_opt: float | None = None,
) -> SequentialVerdict:
    """The gate "the population mean ≤ ``threshold``" after the values scored so far (per-chunk
    means in their sampled order): "pass"/"fail" once the asymptotic confidence sequence lies
    wholly on one side, else "continue", or "exhausted" when every chunk is seen (the mean is
    then known: the fixed-sample verdict applies)."""
    x = np.asarray(seen, dtype=np.float64)
    t = len(x)
    if not 0 < t <= n_population:
        raise ValueError(f"{t} values of a population of {n_population}: need 1..N")
    estimate = float(x.mean())
    if t == n_population:
        return SequentialVerdict("exhausted", t, t, estimate, estimate, estimate)
    if t < MIN_CHUNKS:
        return SequentialVerdict("continue", t, n_population, -math.inf, math.inf, estimate)
    rho2 = best_rho2(t_opt or default_t_opt(n_population), alpha)
    radius = float(mixture_radius(t, x.std(), alpha, rho2))
    low, high = estimate - radius, estimate + radius
    decision = "pass" if high < threshold else "fail" if low > threshold else "continue"
    return SequentialVerdict(decision, t, n_population, low, high, estimate)


def first_mean_decisions(
    orders: np.ndarray,
    threshold: float,
    batch: int,
    alpha: float = 0.05,
    naive_z: float | None = None,
) -> np.ndarray:
    """Many orders of one population at once: per row of ``orders`` (runs × N, each row the
    population's values in one sampled order), the decision of the first look that decides —
    "pass", "fail", or "" when none does before the last look — by ``mean_look``'s rule at
    looks every ``batch`` values. With ``naive_z``, by naive peeking instead: the fixed-sample
    interval mean ± z·s/√t·√((N − t)/(N − 1)) at the same looks (what the sequence replaces).
    The simulations (tests, benchmarks/) replay thousands of orders with it; the gate itself
    uses ``mean_look``, and a test checks the two agree."""
    x = np.asarray(orders, dtype=np.float64)
    runs, n = x.shape
    looks = np.array([t for t in range(batch, n, batch) if t >= MIN_CHUNKS])
    if looks.size == 0:
        return np.full(runs, "", dtype="<U4")
    t = looks.astype(np.float64)
    mean = np.cumsum(x, axis=1)[:, looks - 1] / t
    sd = np.sqrt(np.maximum(np.cumsum(x**2, axis=1)[:, looks - 1] / t - mean**2, 0.0))
    if naive_z is None:
        radius = mixture_radius(t, sd, alpha, best_rho2(default_t_opt(n), alpha))
    else:
        radius = naive_z * sd / np.sqrt(t - 1) * np.sqrt((n - t) / (n - 1))
    hit_pass, hit_fail = mean + radius < threshold, mean - radius > threshold
    decided = hit_pass | hit_fail
    first = decided.argmax(axis=1)
    passed = hit_pass[np.arange(runs), first]
    return np.where(decided.any(axis=1), np.where(passed, "pass", "fail"), "")
