"""The bounded KLD baseline against the full-vocabulary KLD on the real SmolLM2 and its Q2_K
canary (the largest divergence, so the largest tail term), on the whole PPL excerpt: the error
of the mean KLD within 1e-3 nats (issue 14's target) and within the estimate's own noise."""

from __future__ import annotations

import os

import numpy as np
import pytest

from quantgate.backends.llama_cpp import LlamaCppBackend
from quantgate.configuration.registry import load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.evaluation.kld_top_k import kl_divergence_top_k, top_k_rows
from quantgate.evaluation.perplexity import kl_divergence_rows
from quantgate.evaluation.quality import QualityEvaluator
from quantgate.session import GateSession
from support.helpers import REPO

pytestmark = pytest.mark.real_model


def test_the_bounded_store_matches_the_full_vocabulary_kld(smollm2_artifacts):
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    session = GateSession(registry, Thresholds(REPO / "thresholds", registry), os.cpu_count())
    settings = session.loading.settings("smollm2")
    session.close()
    ppl = registry.evaluation_for("smollm2").perplexity
    evaluator = QualityEvaluator(ppl, registry.resolve(ppl.text))
    baseline, q2k = smollm2_artifacts
    rows = []
    for artifact in (baseline, q2k):
        backend = LlamaCppBackend(artifact, settings)
        rows.append(evaluator.full_logprobs(backend))
        backend.close()
    base, comp = rows

    full = kl_divergence_rows(base, comp)
    stored = top_k_rows(base, ppl.kld_top_k, ppl.kld_tail_samples)
    estimate = kl_divergence_top_k(stored, comp)
    error = estimate.mean() - full.mean()
    noise = (estimate - full).std() / np.sqrt(len(full))
    assert full.mean() > 0.3  # the canary: a large divergence with a heavy tail
    assert abs(error) <= 1e-3
    assert abs(error) <= 4 * noise  # unbiased: the error is the sample's noise, no more
    # the top-k and the tail's mass alone miss much of it: the sample is doing the work
    binned = kl_divergence_top_k(top_k_rows(base, ppl.kld_top_k, 0), comp)
    assert full.mean() - binned.mean() > 20 * noise
    # 8 (k + m) + 8 bytes a token against 2 n_vocab in float16
    assert stored.itemsize * 40 < 2 * base.shape[1]
