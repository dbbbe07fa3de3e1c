"""The bounded KLD baseline's error and size (issue 14): the stored top-k, tail mass and tail
sample against the full-vocabulary KLD, on the real model's PPL text.

    .venv/bin/python benchmarks/kld_store_error.py [--model smollm2] [--variants Q8_0,Q4_K_M,Q2_K]
        [--sizes 64:0,256:0,32:32,64:64,128:128]

For each variant and size k:m (top-k tokens : tail samples): the full-vocabulary mean KLD, the
estimate's error of the mean (estimate minus full) with its standard error, the p99 of the
per-token absolute error, and the kld_p99 either way. ``m = 0`` is the top-k and the tail as one
bin alone (a lower bound). Then the bytes a scored token costs, against the whole vocabulary in
float16 (what the store kept before), for this model's vocabulary and for 128k and 256k. Exits 1
when the registry's size (evaluation.perplexity.kld_top_k, kld_tail_samples) misses the 1e-3
nats target on the mean.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from quantgate.backends.llama_cpp import LlamaCppBackend
from quantgate.configuration.registry import load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.evaluation.kld_top_k import bytes_per_token, kl_divergence_top_k, top_k_rows
from quantgate.evaluation.perplexity import kl_divergence_rows
from quantgate.evaluation.quality import QualityEvaluator
from quantgate.session import GateSession

REPO = Path(__file__).resolve().parents[1]
TARGET_NATS = 1e-3


def scored_rows(evaluator: QualityEvaluator, artifact, settings) -> np.ndarray:
    backend = LlamaCppBackend(artifact, settings)
    rows = evaluator.full_logprobs(backend)
    backend.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--variants", default="Q8_0,Q4_K_M,Q2_K")
    ap.add_argument("--sizes", default="64:0,256:0,32:32,64:64,128:128,64:192")
    ap.add_argument(
        "--registry",
        type=Path,
        default=REPO / "fixtures" / "models.yaml",
        help="the registry (a copy with smaller evaluation settings: the tests' tiny run)",
    )
    opts = ap.parse_args()

    registry = load_registry(opts.registry.resolve())
    session = GateSession(registry, Thresholds(REPO / "thresholds", registry), os.cpu_count())
    settings = session.loading.settings(opts.model)
    ppl = registry.evaluation_for(opts.model).perplexity
    evaluator = QualityEvaluator(ppl, registry.resolve(ppl.text))
    pairs = {p.compression_name: p for p in registry.pairs([opts.model])}
    sizes = [tuple(int(x) for x in size.split(":")) for size in opts.sizes.split(",")]
    registry_size = (ppl.kld_top_k, ppl.kld_tail_samples)

    base = scored_rows(evaluator, session.artifacts.baseline(opts.model), settings)
    n_vocab = base.shape[1]
    print(
        f"\n{opts.model}: {len(base)} scored tokens of {evaluator.text_path.name}, "
        f"vocabulary {n_vocab}, registry k:m = {registry_size[0]}:{registry_size[1]}"
    )
    print(
        "| variant | k:m | bytes/token | full mean KLD | error of the mean (s.e.) | "
        "p99 per-token error | kld_p99 full | kld_p99 estimate |"
    )
    print("|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for name in opts.variants.split(","):
        comp = scored_rows(evaluator, session.artifacts.variant(pairs[name]), settings)
        full = kl_divergence_rows(base, comp)
        for k, m in sorted({*sizes, registry_size}, key=lambda s: (s[1] > 0, s)):
            estimate = kl_divergence_top_k(top_k_rows(base, k, m), comp)
            error = estimate - full
            standard_error = error.std() / np.sqrt(len(error))
            if (k, m) == registry_size:
                worst = max(worst, abs(error.mean()))
            print(
                f"| {name} | {k}:{m} | {bytes_per_token(k, m):,} | {full.mean():.5f} | "
                f"{error.mean():+.1e} ({standard_error:.0e}) | "
                f"{np.percentile(abs(error), 99):.1e} | {np.percentile(full, 99):.4f} | "
                f"{np.percentile(estimate, 99):.4f} |"
            )
    session.close()

    print(
        f"\n| vocabulary | whole rows, float16 | bounded, k:m = {registry_size[0]}:"
        f"{registry_size[1]} | ratio |"
    )
    print("|---|---|---|---|")
    for vocab in (n_vocab, 128_256, 256_000):
        whole, bounded = 2 * vocab, bytes_per_token(*registry_size)
        print(f"| {vocab:,} | {whole:,} B/token | {bounded:,} B/token | {whole / bounded:.0f}x |")
    met = worst <= TARGET_NATS
    print(
        f"\nlargest error of the mean at the registry's size: {worst:.1e} nats "
        f"(target <= {TARGET_NATS:g}): {'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
