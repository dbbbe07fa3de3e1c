"""The bounded KLD baseline (top-k, tail mass, tail sample), on synthetic distributions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantgate.evaluation.kld_top_k import (
    bytes_per_token,
    kl_divergence_top_k,
    top1_agrees,
    top_k_rows,
)
from quantgate.evaluation.perplexity import kl_divergence_rows, log_softmax


def _pair(seed: int, rows: int = 32, vocab: int = 500, noise: float = 0.5):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(rows, vocab))
    base = log_softmax(logits)
    comp = log_softmax(logits + rng.normal(scale=noise, size=logits.shape))
    return base, comp


def test_the_whole_vocabulary_as_top_k_is_the_full_kld():
    base, comp = _pair(0)
    exact = kl_divergence_rows(base, comp)
    rows = top_k_rows(base, 500, m=8)
    assert rows["tail_ids"].shape == (32, 0)  # no tail left to sample
    np.testing.assert_allclose(kl_divergence_top_k(rows, comp), exact, atol=1e-5)
    # k above the vocabulary is clamped to it
    assert top_k_rows(base, 10_000, m=8)["ids"].shape == (32, 500)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 64), noise=st.floats(0.01, 3.0))
def test_without_the_sample_the_estimate_is_a_lower_bound(seed, k, noise):
    # the tail as one bin: the log-sum inequality makes it a lower bound (up to rounding);
    # the sampled inside term is never negative, so each token's estimate is >= 0
    base, comp = _pair(seed, rows=8, vocab=200, noise=noise)
    exact = kl_divergence_rows(base, comp)
    binned = kl_divergence_top_k(top_k_rows(base, k, m=0), comp)
    assert (binned <= exact + 1e-5).all()
    assert (kl_divergence_top_k(top_k_rows(base, k, m=4, seed=seed), comp) >= binned - 1e-9).all()


def test_the_sampled_tail_makes_the_estimate_unbiased():
    # many rows, a small top-k: the one-bin estimate misses much of the KLD, the sampled one
    # matches the full KLD's mean within its own sampling noise
    base, comp = _pair(1, rows=400, vocab=2000)
    exact = kl_divergence_rows(base, comp)
    estimate = kl_divergence_top_k(top_k_rows(base, 8, m=32), comp)
    binned = kl_divergence_top_k(top_k_rows(base, 8, m=0), comp)
    noise = (estimate - exact).std() / np.sqrt(len(exact))
    assert exact.mean() - binned.mean() > 50 * noise
    assert abs(estimate.mean() - exact.mean()) < 4 * noise


def test_the_tail_sample_follows_the_tail_distribution():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    rows = top_k_rows(np.log(np.tile(p, (2000, 1))), 1, m=4)
    picks = np.bincount(rows["tail_ids"].ravel(), minlength=4) / rows["tail_ids"].size
    np.testing.assert_allclose(picks, [0, 0.6, 0.3, 0.1], atol=0.02)
    assert (rows["tail_logp"] == np.log(p).astype(np.float32)[rows["tail_ids"]]).all()
    # fixed by the seed
    again = top_k_rows(np.log(np.tile(p, (2000, 1))), 1, m=4)
    assert (again["tail_ids"] == rows["tail_ids"]).all()


@pytest.mark.parametrize("cores", [1, 3, 8])
def test_the_tail_sample_is_the_same_on_any_number_of_cores(monkeypatch, cores):
    # the rows are split over the process's cores: a serial run (2 cores) and an xdist worker
    # (1 core) must store the same sample, or their KLDs differ by the sample's noise
    from quantgate.backends import row_threads

    base, comp = _pair(3, rows=200, vocab=300)
    monkeypatch.setattr(row_threads, "available_cores", lambda: 2)
    reference = top_k_rows(base, 8, m=16, seed=5)
    monkeypatch.setattr(row_threads, "available_cores", lambda: cores)
    rows = top_k_rows(base, 8, m=16, seed=5)
    assert (rows == reference).all()
    assert (kl_divergence_top_k(rows, comp) == kl_divergence_top_k(reference, comp)).all()


def test_a_model_against_itself_is_exactly_zero():
    base, _ = _pair(2)
    assert (kl_divergence_top_k(top_k_rows(base, 16, m=16), base) == 0.0).all()
    assert top1_agrees(top_k_rows(base, 16, m=16), base).all()


def test_rows_hold_the_most_probable_first_and_ties_break_like_argmax():
    logp = np.log(np.array([[0.1, 0.4, 0.1, 0.4], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32))
    rows = top_k_rows(logp, 2, m=2)
    assert rows["ids"].tolist() == [[1, 3], [0, 1]]
    assert rows["ids"][:, 0].tolist() == logp.argmax(axis=-1).tolist()
    np.testing.assert_allclose(rows["tail"], [0.2, 0.5], rtol=1e-6)


def test_top1_agreement_reads_the_variants_argmax():
    base = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]], dtype=np.float32))
    comp = np.log(np.array([[0.2, 0.7, 0.1], [0.1, 0.2, 0.7]], dtype=np.float32))
    assert top1_agrees(top_k_rows(base, 2, m=1), comp).tolist() == [False, True]


def test_a_variant_with_no_mass_outside_the_top_k_stays_finite():
    base = np.log(np.array([[0.5, 0.3, 0.2]], dtype=np.float32))
    comp = np.log(np.array([[0.6, 0.4, 1e-45]], dtype=np.float32))
    value = kl_divergence_top_k(top_k_rows(base, 2, m=4), comp)
    assert np.isfinite(value).all() and value[0] > 0


def test_a_confident_variant_whose_tail_cancels_in_float32_keeps_a_true_estimate():
    """The variant keeps 1e-8 outside the baseline's top 2, less than float32 log-probs
    resolve in 1 - (the top's sum): that difference comes out 0 while the tail tokens keep
    their probabilities. The tail's mass, summed over the tail, keeps the estimate at the
    exact KLD (computed from the same rows: 1 - the sum put it at 1e8 nats and more)."""
    n_tail = 1000
    base = np.log(np.array([0.6, 0.4 - 5e-6] + [5e-6 / n_tail] * n_tail))[None, :]
    comp = np.log(np.array([0.5, 0.5 - 1e-8] + [1e-8 / n_tail] * n_tail))[None, :]
    base, comp = base.astype(np.float32), comp.astype(np.float32)
    exact = kl_divergence_rows(base, comp)
    estimate = kl_divergence_top_k(top_k_rows(base, 2, m=64), comp)
    np.testing.assert_allclose(estimate, exact, rtol=1e-3)


@pytest.mark.parametrize(("k", "m", "size"), [(1, 1, 24), (128, 128, 2056)])
def test_bytes_per_token_do_not_depend_on_the_vocabulary(k, m, size):
    assert bytes_per_token(k, m) == size == top_k_rows(np.zeros((1, 50_000)), k, m).itemsize
