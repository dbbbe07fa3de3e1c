"""Paired statistics for noise-aware verdicts. Pure numpy/scipy: no model, no pytest.

Baseline and compressed model are scored on the same items (benchmarks) or the same chunks
(perplexity, KLD), so every interval here resamples *pairs*: item i of the baseline always
travels with item i of the compressed model. Pairing removes the item-difficulty variance that
an unpaired comparison of two accuracies would carry, which is most of it.

Bootstrap intervals are percentile intervals over ``n_boot`` resamples from a fixed seed, so the
same inputs always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quantgate.errors import EvaluationError

#: resamples per interval; 2000 puts the Monte-Carlo error of a 95 % bound near 0.1 point of D
N_BOOT = 2000
SEED = 20240531
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided confidence interval."""

    value: float
    low: float
    high: float
    level: float = LEVEL

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def _percentiles(replicates: np.ndarray, level: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if len(finite) == 0:
        raise EvaluationError("every bootstrap resample was degenerate (baseline mean 0)")
    alpha = (1.0 - level) / 2.0
    low, high = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def _retention(base_means: np.ndarray, comp_means: np.ndarray) -> np.ndarray:
    """D per replicate. A replicate in which neither model scored shows no loss: D 0, not a
    dropped replicate. Dropping those conditions on the baseline having scored, and on a few
    items (a --limit tier, a near-chance model) every kept replicate then repeats the one
    flip: one baseline-correct item of 8 that the variant missed read D 100 [100, 100], a
    proven loss out of one item. A replicate where only the variant scored is still dropped
    (its D, minus infinity, has no percentile)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (1.0 - comp_means / base_means) * 100.0
    return np.where(base_means > 0, d, np.where(comp_means > 0, np.nan, 0.0))


def _resample_index(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n, size=(n_boot, n))


def _paired(base: Sequence[float], comp: Sequence[float], what: str) -> tuple[np.ndarray, ...]:
    b = np.asarray(base, dtype=np.float64)
    c = np.asarray(comp, dtype=np.float64)
    if b.shape != c.shape or b.ndim != 1:
        raise EvaluationError(f"{what}: baseline has {b.shape} item scores, compressed {c.shape}")
    if len(b) == 0:
        raise EvaluationError(f"{what}: zero paired items; nothing to compare")
    if not (np.isfinite(b).all() and np.isfinite(c).all()):
        raise EvaluationError(f"{what}: NaN/inf item scores")
    return b, c


def retention_interval(
    base: Sequence[float],
    comp: Sequence[float],
    what: str = "retention",
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """D = (1 - mean(comp) / mean(base)) * 100 with a paired bootstrap CI over items."""
    b, c = _paired(base, comp, what)
    if not b.mean() > 0:
        raise EvaluationError(f"{what}: the baseline scored 0; retention is undefined")
    point = _retention(np.array([b.mean()]), np.array([c.mean()]))[0]
    idx = _resample_index(len(b), n_boot, np.random.default_rng(seed))
    return Interval(float(point), *_percentiles(_retention(b[idx].mean(1), c[idx].mean(1)), level))


def overall_interval(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """D_overall = mean of D_i, with a CI that resamples each benchmark's items independently
    (benchmarks are different item sets) in every replicate."""
    if not pairs:
        raise EvaluationError("D_overall over zero benchmarks")
    rng = np.random.default_rng(seed)
    points, reps = [], []
    for i, (base, comp) in enumerate(pairs):
        b, c = _paired(base, comp, f"benchmark {i}")
        if not b.mean() > 0:
            raise EvaluationError("D_overall: a baseline scored 0; retention is undefined")
        points.append(_retention(np.array([b.mean()]), np.array([c.mean()]))[0])
        idx = _resample_index(len(b), n_boot, rng)
        reps.append(_retention(b[idx].mean(1), c[idx].mean(1)))
    point = float(np.mean(points))
    return Interval(point, *_percentiles(np.mean(reps, axis=0), level))


def is_binary(values: Sequence[float]) -> bool:
    """Whether item scores are correct/wrong (acc, exact_match), not graded (mc2, F1)."""
    v = np.asarray(values, dtype=np.float64)
    return bool(np.isin(v, (0.0, 1.0)).all())


@dataclass(frozen=True)
class Flips:
    """How many items changed correctness between baseline and compressed model."""

    n_items: int
    correct_to_wrong: int
    wrong_to_correct: int
    #: McNemar's exact (binomial) two-sided p-value for "the two models are equally accurate"
    mcnemar_p: float

    @property
    def n_flipped(self) -> int:
        return self.correct_to_wrong + self.wrong_to_correct

    @property
    def flips_pct(self) -> float:
        return self.n_flipped / self.n_items * 100.0

    @property
    def interval(self) -> Interval:
        """The flip rate's exact 95 % interval over the paired items (what modes ci and
        strict judge): a count on 40 items is a sample, and another machine's kernels move
        a near-tie or two."""
        return proportion_interval(self.n_flipped, self.n_items)


def mcnemar_exact(correct_to_wrong: int, wrong_to_correct: int) -> float:
    """Two-sided exact McNemar test: the discordant pairs split as Binomial(n, 1/2)."""
    from scipy.stats import binomtest

    n = correct_to_wrong + wrong_to_correct
    if n == 0:
        return 1.0
    return float(binomtest(min(correct_to_wrong, wrong_to_correct), n, 0.5).pvalue)


def flips(base: Sequence[float], comp: Sequence[float], what: str = "flips") -> Flips:
    """Flip counts of a correct/wrong metric.

    Raises:
        EvaluationError: graded item scores (flips need correct/wrong items).
    """
    b, c = _paired(base, comp, what)
    if not (is_binary(b) and is_binary(c)):
        raise EvaluationError(f"{what}: item scores are graded, not correct/wrong; no flips")
    c2w = int(((b == 1) & (c == 0)).sum())
    w2c = int(((b == 0) & (c == 1)).sum())
    return Flips(len(b), c2w, w2c, mcnemar_exact(c2w, w2c))


def expected_half_width(n: int, baseline_score: float, level: float = LEVEL) -> float:
    """Half-width, in points of D, of the CI a sample of ``n`` correct/wrong items gives when
    the compressed model is as accurate as the baseline but flips independently of it (the
    worst case of pairing): z * sqrt(2 p (1 - p) / n) / p * 100."""
    p = baseline_score
    if n <= 0 or not 0 < p < 1:
        return math.inf if n <= 0 or p <= 0 else 0.0
    z = _z(level)
    return z * math.sqrt(2 * p * (1 - p) / n) / p * 100.0


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2.0))


def chunk_ratio_interval(
    base_chunk_nll: Sequence[float],
    comp_chunk_nll: Sequence[float],
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """PPL increase in %, (exp(mean NLL_c - mean NLL_b) - 1) * 100, with a paired bootstrap CI
    over chunks (each chunk's mean NLL; chunks hold equal token counts)."""
    b, c = _paired(base_chunk_nll, comp_chunk_nll, "perplexity chunks")
    idx = _resample_index(len(b), n_boot, np.random.default_rng(seed))
    reps = (np.exp(c[idx].mean(1) - b[idx].mean(1)) - 1.0) * 100.0
    point = (math.exp(c.mean() - b.mean()) - 1.0) * 100.0
    return Interval(point, *_percentiles(reps, level))


def chunk_percentile_interval(
    per_chunk: np.ndarray,
    q: float,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
    batch: int = 100,
) -> Interval:
    """A percentile of per-token values (``[n_chunks, tokens_per_chunk]``) with a bootstrap CI
    that resamples whole chunks (tokens within a chunk are not independent), e.g. kld_p99."""
    v = np.asarray(per_chunk, dtype=np.float64)
    if v.ndim != 2 or v.size == 0:
        raise EvaluationError("a percentile over zero chunks")
    idx = _resample_index(len(v), n_boot, np.random.default_rng(seed))
    reps = np.concatenate(
        [np.percentile(v[idx[i : i + batch]].reshape(len(idx[i : i + batch]), -1), q, axis=1)
         for i in range(0, n_boot, batch)]
    )  # fmt: skip
    return Interval(float(np.percentile(v, q)), *_percentiles(reps, level))


def mean_interval(
    values: Sequence[float], n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL
) -> Interval:
    """Mean with a bootstrap CI (e.g. KLD over chunks: each chunk's mean KLD)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        raise EvaluationError("a mean over zero values")
    idx = _resample_index(len(v), n_boot, np.random.default_rng(seed))
    return Interval(float(v.mean()), *_percentiles(v[idx].mean(1), level))


def proportion_interval(k: int, n: int, level: float = LEVEL) -> Interval:
    """A count of ``k`` in ``n`` as a percentage with its exact (Clopper-Pearson) interval:
    the flip rate over the paired items. Exact, not a bootstrap: with 0 or 1 flips the
    bootstrap interval collapses to the point, and a rate near 0 is the usual case."""
    from scipy.stats import binomtest

    if n <= 0:
        raise EvaluationError("a rate over zero items")
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return Interval(k / n * 100.0, float(ci.low) * 100.0, float(ci.high) * 100.0, level)


# -- graded per-item signals of multiple-choice items ----------------------------------------------


def choice_distribution(loglikelihoods: Sequence[float]) -> np.ndarray:
    """The model's answer distribution over an item's choices: the softmax of the choices'
    summed log-likelihoods (the quantities lm-eval compares for acc)."""
    x = np.asarray(loglikelihoods, dtype=np.float64)
    x = x - x.max()
    p = np.exp(x)
    return p / p.sum()


def gold_probability(loglikelihoods: Sequence[float], target: int) -> float:
    """Probability the model gives the gold choice among the item's choices."""
    return float(choice_distribution(loglikelihoods)[target])


def choice_kld(base_lls: Sequence[float], comp_lls: Sequence[float]) -> float:
    """KL(P_baseline || P_compressed) between the two answer distributions over one item's
    choices, in nats. Exactly 0 for identical log-likelihoods."""
    # in log space: a badly damaged model's choices differ by more than exp() can hold
    # (~745 nats summed over an ending), where a softmax underflows to 0 and log(0) is -inf
    log_p, log_q = _log_choice_distribution(base_lls), _log_choice_distribution(comp_lls)
    p = np.exp(log_p)
    return max(0.0, float(np.sum(np.where(p > 0, p * (log_p - log_q), 0.0))))


def _log_choice_distribution(loglikelihoods: Sequence[float]) -> np.ndarray:
    x = np.asarray(loglikelihoods, dtype=np.float64)
    return x - (x.max() + np.log(np.sum(np.exp(x - x.max()))))


# -- power ---------------------------------------------------------------------------------------

#: the power at which "detectable" is read: a loss of the minimum detectable size fails the
#: gate in 80 % of repeated samples (the usual choice in power analysis)
POWER = 0.80


def minimum_detectable(
    threshold: float,
    half_width: float,
    mode: str,
    upper_bound: bool = True,
    level: float = LEVEL,
    power: float = POWER,
) -> float:
    """The smallest true value of a metric that its gate fails with probability ``power``,
    given the measured sampling error (``half_width`` of the measured two-sided interval:
    se = half_width / z). Normal approximation:

    * point: fails when the estimate is beyond the threshold: threshold + z_power * se;
    * ci: fails when the whole interval is: threshold + (z + z_power) * se;
    * strict: fails when any of it is: threshold - (z - z_power) * se.

    For a lower bound (``upper_bound`` False) the offsets go the other way."""
    from scipy.stats import norm

    z = _z(level)
    se = half_width / z
    z_power = float(norm.ppf(power))
    # sequential: judged as ci when its items run out (early stops only lower the error)
    offsets = {"point": z_power, "ci": z + z_power, "strict": z_power - z}
    offset = offsets["ci" if mode == "sequential" else mode] * se
    return threshold + offset if upper_bound else threshold - offset
