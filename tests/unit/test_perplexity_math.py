"""The llama-perplexity protocol and KLD math, on synthetic logits (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from quantgate.errors import DataError, EvaluationError
from quantgate.evaluation.perplexity import (
    first_scored,
    kl_divergence_rows,
    kld_stats,
    log_softmax,
    make_chunks,
    perplexity,
    scored_logprobs,
)


def test_chunks_are_non_overlapping_with_bos_replacing_the_first_token():
    tokens = list(range(100, 100 + 2 * 8 + 5))
    chunks = make_chunks(tokens, n_ctx=8, bos=1)
    assert chunks == [[1, *range(101, 108)], [1, *range(109, 116)]]  # remainder of 5 dropped


def test_no_bos_leaves_tokens_alone_and_max_chunks_caps():
    chunks = make_chunks(list(range(40)), n_ctx=8, bos=None, max_chunks=3)
    assert chunks == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]


def test_too_short_text_is_a_data_error():
    with pytest.raises(DataError, match="has 15 tokens; perplexity with n_ctx=8 needs at least 16"):
        make_chunks(list(range(15)), n_ctx=8, bos=1)


def test_scored_positions_are_the_second_half():
    n_ctx, vocab = 8, 5
    chunk = [1, 2, 3, 4, 0, 1, 2, 3]
    logits = np.zeros((n_ctx, vocab), dtype=np.float32)
    logp, nll = scored_logprobs(logits, chunk, "test")
    # rows 4..6 predict tokens 5..7: n_ctx - 1 - n_ctx//2 = 3 tokens
    assert first_scored(n_ctx) == 4 and logp.shape == (3, vocab) and len(nll) == 3
    np.testing.assert_allclose(nll, np.log(vocab))
    assert perplexity(nll) == pytest.approx(vocab)  # uniform over V: PPL = V


def test_nll_picks_the_next_token():
    chunk = [0, 0, 0, 0, 2, 1]  # n_ctx 6: rows 3,4 predict tokens 2 and 1
    logits = np.full((6, 3), -10.0, dtype=np.float32)
    logits[3, 2] = 10.0
    logits[4, 0] = 10.0  # wrong guess for token 1
    _, nll = scored_logprobs(logits, chunk, "test")
    assert nll[0] < 1e-6 and nll[1] > 15


def test_nan_logits_are_an_error_naming_the_model():
    logits = np.zeros((8, 4), dtype=np.float32)
    logits[5, 1] = np.nan
    with pytest.raises(EvaluationError, match="smollm2-broken: 1 of 3 scored positions have NaN"):
        scored_logprobs(logits, [0] * 8, "smollm2-broken")


def test_log_softmax_is_stable_for_huge_logits():
    out = log_softmax(np.array([[1e4, 0.0, -1e4]], dtype=np.float32))
    assert np.isfinite(out).all() and out[0, 0] == pytest.approx(0.0)


def test_kld_zero_for_identical_and_matches_closed_form():
    rng = np.random.default_rng(0)
    a = log_softmax(rng.normal(size=(4, 10)))
    np.testing.assert_allclose(kl_divergence_rows(a.astype(np.float16), a), 0.0, atol=2e-3)
    p, q = np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]])
    expected = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    assert kl_divergence_rows(np.log(p), np.log(q))[0] == pytest.approx(expected)


def test_kld_stats_and_empty_input():
    stats = kld_stats(np.arange(100, dtype=float), np.array([True] * 75 + [False] * 25))
    assert stats.kld_mean == 49.5 and stats.top1_agreement_pct == 75.0
    assert stats.kld_p99 == pytest.approx(98.01)
    with pytest.raises(EvaluationError, match="zero tokens"):
        kld_stats(np.array([]), np.array([], dtype=bool))
    with pytest.raises(EvaluationError, match="zero tokens"):
        perplexity(np.array([]))
