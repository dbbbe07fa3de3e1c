"""Gate mode ci on the real SmolLM2, over five different item subsets: Q8_0 passes every time,
the Q2_K canary still fails (its PPL and KLD intervals lie far above the bounds).

Items of a 0-shot benchmark are scored independently, and chunks of the perplexity text too, so
a run on a subset gives exactly the per-item (per-chunk) results of the full run restricted to
it: the subsets here are drawn from the cached records of one real run of each model.
"""

from __future__ import annotations

import numpy as np
import pytest

from quantgate.configuration.registry import load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.session import GateSession
from quantgate.verdicts.gates import judge
from quantgate.verdicts.stats import chunk_ratio_interval, mean_interval, retention_interval
from support.helpers import REPO

pytestmark = pytest.mark.real_model
SEEDS = range(5)


@pytest.fixture(scope="module")
def session():
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    s = GateSession(registry, Thresholds(REPO / "thresholds", registry), root=REPO)
    yield s
    s.close()


def _pair(session, name):
    return next(p for p in session.registry.pairs(["smollm2"]) if p.compression_name == name)


def _subset(n: int, seed: int) -> np.ndarray:
    """Three quarters of the items, a different draw per seed."""
    return np.sort(np.random.default_rng(seed).choice(n, size=max(2, n * 3 // 4), replace=False))


def test_thresholds_under_test_are_in_ci_mode(session):
    t = session.thresholds.for_pair("smollm2", "Q8_0")
    assert {t[k].mode for k in ("ppl_increase_pct", "kld_mean", "D_hellaswag", "D_overall")} == {
        "ci"
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_q8_0_passes_retention_in_ci_mode_on_every_subset(session, seed):
    pair = _pair(session, "Q8_0")
    thresholds = session.thresholds.for_pair("smollm2", "Q8_0")
    for bench in pair.model.benchmarks:
        base, comp = session.retention.comparison(pair, bench).paired_scores()  # type: ignore[misc]
        idx = _subset(len(base), seed)
        iv = retention_interval(np.take(base, idx), np.take(comp, idx))
        name = f"D_{bench}"
        if thresholds[name].mode != "ci":
            continue  # D_truthfulqa_mc2 keeps the study's point rule
        (outcome,) = judge("retention", {name: iv.value}, thresholds, intervals={name: iv})
        assert outcome.passed, outcome.line()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("compression", "passes"), [("Q8_0", True), ("Q2_K", False)])
def test_perplexity_and_kld_in_ci_mode_on_every_chunk_subset(session, seed, compression, passes):
    quality = session.perplexity.result(_pair(session, compression))
    idx = _subset(len(quality.chunk_nll), seed)
    ppl = chunk_ratio_interval(
        np.take(quality.chunk_nll_baseline, idx), np.take(quality.chunk_nll, idx)
    )
    kld = mean_interval(np.take(quality.chunk_kld, idx))
    thresholds = session.thresholds.for_pair("smollm2", compression)
    outcomes = judge(
        "perplexity",
        {"ppl_increase_pct": ppl.value},
        thresholds,
        intervals={"ppl_increase_pct": ppl},
    ) + judge("kld", {"kld_mean": kld.value}, thresholds, intervals={"kld_mean": kld})
    assert all(o.threshold.mode == "ci" for o in outcomes)
    assert [o.passed for o in outcomes] == [passes, passes], [o.line() for o in outcomes]


def test_the_baseline_against_itself_is_exactly_zero(session):
    """Same weights, same settings: KLD exactly 0 and every argmax the same (the bounded
    baseline's top-k, tail mass and tail sample, read back from the variant's float32 rows)."""
    quality = session.perplexity.compare("smollm2", session.artifacts.baseline("smollm2"))
    assert quality.kld_mean == 0.0 and quality.kld_p99 == 0.0
    assert quality.top1_agreement_pct == 100.0 and quality.ppl == quality.ppl_baseline
