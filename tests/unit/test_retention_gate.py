"""The retention arithmetic: D and a zero baseline, pairing items by doc_id, different item sets
as an error, graded signals that see a loss accuracy hides."""

from __future__ import annotations

import pytest

from quantgate.errors import EvaluationError
from quantgate.evaluation.comparison import retention_pct


def test_retention_formula_and_zero_baseline():
    assert retention_pct(0.45, 0.5, "x") == pytest.approx(10.0)
    assert retention_pct(0.55, 0.5, "x") == pytest.approx(-10.0)  # better than baseline
    with pytest.raises(EvaluationError, match=r"x: the baseline scored 0\.0; retention against"):
        retention_pct(0.3, 0.0, "x")


def _result(items, score=None):
    from quantgate.evaluation.comparison import BenchmarkResult

    scores = [it["acc"] for it in items]
    return BenchmarkResult("b", "t", "acc", score or sum(scores) / len(scores), len(items), items)


def _item(doc_id, acc, lls=(-1.0, -2.0)):
    return {"doc_id": doc_id, "target": 0, "loglikelihoods": list(lls), "acc": acc}


def test_items_pair_by_doc_id_not_position():
    from quantgate.evaluation.comparison import Comparison

    base = _result([_item(0, 1.0), _item(1, 0.0), _item(2, 1.0)])
    # the same answers, listed in another order (a cached run against a fresh one)
    comp = _result([_item(2, 1.0), _item(0, 1.0), _item(1, 0.0)])
    c = Comparison("b", base.score, comp, base)
    assert c.flips().n_flipped == 0  # by position, two items would have flipped
    assert [b["doc_id"] for b, _ in c.items] == [0, 1, 2]
    assert c.graded()["choice_kld_b"].value == 0.0


def test_different_item_sets_are_an_error():
    from quantgate.evaluation.comparison import Comparison

    base = _result([_item(0, 1.0), _item(1, 0.0)])
    comp = _result([_item(0, 1.0), _item(5, 0.0)])
    with pytest.raises(EvaluationError, match=r"only the baseline: \[1\].*compressed model: \[5\]"):
        _ = Comparison("b", base.score, comp, base).items


def test_graded_signals_see_a_loss_that_accuracy_hides():
    from quantgate.evaluation.comparison import Comparison

    # every item still right, but the compressed model is far less sure of the gold answer
    base = _result([_item(i, 1.0, (-1.0, -4.0)) for i in range(20)])
    comp = _result([_item(i, 1.0, (-1.0, -1.5)) for i in range(20)])
    c = Comparison("b", base.score, comp, base)
    assert c.d == 0.0 and c.flips().n_flipped == 0
    graded = c.graded()
    assert graded["Dgold_b"].value > 20 and graded["choice_kld_b"].value > 0.1
