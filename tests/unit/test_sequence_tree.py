"""The scoring plan of quantgate.backends.sequence_tree on its own: every sequence sees exactly
its request's tokens at their positions, shared tokens are evaluated once, the budget and the
sequence limit hold, and the vectorised row scoring equals the plain log-softmax."""

from __future__ import annotations

import numpy as np
import pytest

from quantgate.backends.sequence_tree import plan_rounds, score_rows
from quantgate.evaluation.perplexity import log_softmax


def _sequences(rounds, requests):
    """Replay the rounds as a KV cache would: each request's (position, token) cells, and
    which output rows would score which (request, token)."""
    seen: dict[int, list[tuple[int, int]]] = {}
    kept: list[tuple[int, int]] = []
    for rd in rounds:
        cells: dict[int, list[tuple[int, int]]] = {
            s: list(kept[: rd.reused]) for s in range(len(rd.requests))
        }
        for token, pos, seqs in zip(rd.tokens, rd.positions, rd.seq_ids, strict=True):
            for s in seqs:
                # each sequence's tokens arrive in rising positions, one apart
                assert pos == len(cells[s]), "a sequence's positions must rise by one"
                cells[s].append((pos, token))
        for s, r in enumerate(rd.requests):
            seen[r] = cells[s]
        kept = cells[0][: len(rd.retained)]
        assert [t for _, t in kept] == rd.retained
    return {r: [t for _, t in seen[r]] for r in range(len(requests))}


def _paths(requests):
    return [list(ctx) + list(cont[:-1]) for ctx, cont in requests]


ITEM = [(list(range(10, 30)), [40 + i, 41, 42 + i]) for i in range(4)]  # one context, 4 endings


def test_an_items_endings_share_their_context_and_see_exactly_their_tokens():
    (rd,) = plan_rounds(ITEM, budget=512, n_seq_max=64, n_ctx=2048)
    assert len(rd.tokens) == 20 + 4 * 2  # the context once, each ending's inputs once
    assert rd.seq_ids[0] == [0, 1, 2, 3]
    assert sum(rd.outputs) == 1 + 4 * 2  # the context's last row serves all four endings
    assert len(rd.picks) == 4 * 3
    assert _sequences([rd], ITEM) == dict(enumerate(_paths(ITEM)))


def test_rounds_keep_to_the_budget_and_the_sequence_limit():
    rng = np.random.default_rng(0)
    requests = [
        (
            list(rng.integers(0, 50, rng.integers(1, 40))),
            list(rng.integers(0, 50, rng.integers(1, 9))),
        )
        for _ in range(300)
    ]
    rounds = list(plan_rounds(requests, budget=64, n_seq_max=5, n_ctx=2048))
    assert [r for rd in rounds for r in rd.requests] == list(range(300))
    for rd in rounds:
        assert len(rd.requests) <= 5
        assert len(rd.tokens) <= 64 or len(rd.requests) == 1
    assert _sequences(rounds, requests) == dict(enumerate(_paths(requests)))


def test_a_request_over_the_budget_gets_a_round_of_its_own():
    long = (list(range(100)), [1, 2, 3])
    rounds = list(plan_rounds([ITEM[0], long, ITEM[1]], budget=32, n_seq_max=8, n_ctx=2048))
    assert [rd.requests for rd in rounds] == [[0], [1], [2]]
    assert len(rounds[1].tokens) == 102


def test_a_shared_preamble_is_kept_between_rounds_and_calls():
    preamble = list(range(100, 160))
    requests = [([*preamble, i, i + 1], [7, 8]) for i in range(0, 40, 2)]
    rounds = list(plan_rounds(requests, budget=80, n_seq_max=4, n_ctx=2048))
    assert len(rounds) == 5
    assert rounds[0].reused == 0 and all(rd.reused == 60 for rd in rounds[1:])
    assert all(len(rd.tokens) == 4 * 3 for rd in rounds[1:])  # the preamble is not re-evaluated
    assert _sequences(rounds, requests) == dict(enumerate(_paths(requests)))
    # a later call starts from what the last round retained
    (again,) = plan_rounds(requests[:1], budget=80, n_seq_max=4, n_ctx=2048, retained=preamble)
    assert again.reused == 60 and len(again.tokens) == 3


def test_the_context_row_is_never_taken_from_a_past_round():
    ctx = list(range(30))
    (first,) = plan_rounds([(ctx, [1])], budget=80, n_seq_max=4, n_ctx=2048)
    (second,) = plan_rounds(
        [(ctx, [2])], budget=80, n_seq_max=4, n_ctx=2048, retained=first.retained
    )
    assert second.reused == 29 and second.outputs == [True]


@pytest.mark.parametrize(
    "bad, message",
    [
        (([], [1]), "empty context"),
        (([1], []), "empty continuation"),
        (([1] * 40, [1] * 30), "n_ctx"),
    ],
)
def test_bad_requests_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        list(plan_rounds([bad], budget=8, n_seq_max=4, n_ctx=64))


def test_row_scoring_equals_the_plain_log_softmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, (150, 1000)).astype(np.float32)  # more rows than one block
    picks = np.stack(
        [rng.integers(0, 150, 400), rng.integers(0, 1000, 400), rng.integers(0, 7, 400)], axis=1
    )
    picks[:7, 1] = logits[picks[:7, 0]].argmax(axis=1)  # some greedy picks
    sums, greedy, finite = score_rows(logits, picks, 7)
    logp = log_softmax(logits)
    for s in range(7):
        mine = picks[picks[:, 2] == s]
        assert sums[s] == pytest.approx(float(logp[mine[:, 0], mine[:, 1]].sum()), abs=1e-3)
        assert greedy[s] == bool((logp[mine[:, 0]].argmax(axis=1) == mine[:, 1]).all())
    assert finite
    logits[picks[0, 0], 3] = np.nan
    assert not score_rows(logits, picks, 7)[2]
