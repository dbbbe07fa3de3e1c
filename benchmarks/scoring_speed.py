"""Scoring speed against llama.cpp's own tools, in one run on one file (issue 18's table).

    .venv/bin/python benchmarks/scoring_speed.py [--model smollm2] [--items 40] [--variant Q8_0]

Three rows, each a ratio measured back to back:

* log-likelihood tokens/s (HellaSwag items, as lm-eval asks for them) against llama-bench's
  prompt processing on the same file, same batch size, flash attention on (llama.cpp's
  default on CPU, which the scoring context keeps): target >= 0.9;
* items/s against the scoring quantgate did before (benchmarks/llama_reference.py):
  target >= 2;
* PPL + KLD wall time (baseline log-probs, then a variant against them) against
  llama-perplexity's (``--kl-divergence-base``, then ``--kl-divergence``): target <= 1.0.

Tokens/s counts what each side evaluates: a context once and each ending's tokens after it
(the reference evaluates the same tokens). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from compare_llama_bench import llama_bench
from compare_llama_perplexity import llama_perplexity
from llama_reference import ReferenceScorer
from lm_eval.tasks.hellaswag.utils import preprocess

from quantgate.artifacts.llama_tools import tool
from quantgate.backends.lm_eval_model import LlamaCppLM
from quantgate.configuration.registry import load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.evaluation.quality import QualityEvaluator
from quantgate.session import GateSession

REPO = Path(__file__).resolve().parents[1]
HELLASWAG = REPO / "fixtures" / "data" / "hellaswag" / "hellaswag_val_first100.jsonl"


def hellaswag_requests(lm: LlamaCppLM, items: int) -> list[tuple[list[int], list[int]]]:
    """lm-eval's hellaswag requests (query, " " + ending), tokenized as the lm-eval model does."""
    docs = [json.loads(line) for line in HELLASWAG.read_text().splitlines()[:items]]
    requests = []
    for doc in docs:
        query = preprocess(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"])
        for ending in doc["endings"]:
            requests.append(lm._encode_pair(query, " " + preprocess(ending)))
    return requests


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def quantgate_quality(evaluator, base, variant, settings):
    """The baseline's log-probs, then the variant's PPL and KLD against them."""
    from quantgate.backends.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(base, settings)
    scores = evaluator.baseline(backend)
    backend.close()
    backend = LlamaCppBackend(variant, settings)
    result = evaluator.compare(scores, backend)
    backend.close()
    return result


def tool_quality(base, variant, common: list[str], kld_base: list[str]) -> None:
    llama_perplexity(["-m", str(base.path), *common, *kld_base])
    llama_perplexity(["-m", str(variant.path), *common, *kld_base, "--kl-divergence"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--variant", default="Q8_0")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3, help="alternated runs; medians shown")
    ap.add_argument(
        "--registry",
        type=Path,
        default=REPO / "fixtures" / "models.yaml",
        help="the registry (a copy with smaller evaluation settings: the tests' tiny run)",
    )
    opts = ap.parse_args()

    registry = load_registry(opts.registry.resolve())
    session = GateSession(registry, Thresholds(REPO / "thresholds", registry), opts.threads)
    settings = session.loading.settings(opts.model).model_copy(update={"n_threads": opts.threads})
    base = session.artifacts.baseline(opts.model)
    pair = {p.compression_name: p for p in registry.pairs([opts.model])}[opts.variant]
    variant = session.artifacts.variant(pair)
    session.close()
    # built (or found) before anything is timed, and found again under the empty cache below
    os.environ["QUANTGATE_LLAMA_BIN"] = str(tool("llama-bench").parent)
    tool("llama-perplexity")
    from quantgate.backends.llama_cpp import LlamaCppBackend

    # -- multiple-choice log-likelihoods, the three sides alternated --------------------------
    backend = LlamaCppBackend(base, settings)
    lm = LlamaCppLM(backend=backend)
    requests = hellaswag_requests(lm, opts.items)
    reference = ReferenceScorer(str(base.path), settings.n_ctx, settings.n_batch, opts.threads)
    backend.score_requests(requests[:4])  # warm the caches both sides start with
    reference.score_requests(requests[:4])
    ours_runs, ref_runs, pp_runs = [], [], []
    for _ in range(opts.repeats):
        before = backend.tokens_evaluated
        backend._tree.clear()  # no prefix carried over from the last repeat
        ours, seconds = timed(lambda: backend.score_requests(requests))
        ours_runs.append(seconds)
        ours_tokens = backend.tokens_evaluated - before
        before = reference.tokens_evaluated
        theirs, seconds = timed(lambda: reference.score_requests(requests))
        ref_runs.append(seconds)
        ref_tokens = reference.tokens_evaluated - before
        pp_runs.append(llama_bench(base.path, settings.n_batch, [0], opts.threads, 1, "1")["pp"])
    backend.close()
    reference.close()
    worst = max(abs(a - b) for (a, _), (b, _) in zip(ours, theirs, strict=True))
    ours_s, theirs_s, pp = median(ours_runs), median(ref_runs), median(pp_runs)

    # -- PPL + KLD, alternated --------------------------------------------------------------
    ppl = registry.evaluation_for(opts.model).perplexity
    text = registry.resolve(ppl.text)
    common = ["-f", str(text), "-c", str(ppl.n_ctx), "-b", str(settings.n_batch)]
    common += ["-t", str(opts.threads)]  # flash attention: llama.cpp's default, as ours
    if ppl.max_chunks:
        common += ["--chunks", str(ppl.max_chunks)]
    quality_runs, tool_runs = [], []
    for _ in range(opts.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["QUANTGATE_CACHE"] = tmp  # nothing cached: both sides compute all
            quality, seconds = timed(
                lambda: quantgate_quality(QualityEvaluator(ppl, text), base, variant, settings)
            )
            quality_runs.append(seconds)
            kld_base = ["--kl-divergence-base", str(Path(tmp) / "kld-base.bin")]
            tool_runs.append(timed(tool_quality, base, variant, common, kld_base)[1])
    quality_s, tool_s = median(quality_runs), median(tool_runs)

    items_s, ref_items_s = opts.items / ours_s, opts.items / theirs_s
    ours_tps = ours_tokens / ours_s
    rows = [
        (
            f"HellaSwag log-likelihoods, {opts.items} items",
            f"{ours_tokens} tokens in {ours_s:.1f} s = {ours_tps:.0f} tokens/s",
            f"llama-bench pp{settings.n_batch} (-fa 1): {pp:.0f} tokens/s",
            ours_tps / pp,
            ">= 0.9",
            ours_tps / pp >= 0.9,
        ),
        (
            "items/s against the previous scoring",
            f"{items_s:.2f} items/s",
            f"{ref_items_s:.2f} items/s ({ref_tokens} tokens in {theirs_s:.1f} s)",
            items_s / ref_items_s,
            ">= 2",
            items_s / ref_items_s >= 2,
        ),
        (
            f"PPL + KLD, {opts.variant} vs baseline",
            f"{quality_s:.1f} s",
            f"llama-perplexity {tool_s:.1f} s",
            quality_s / tool_s,
            "<= 1.0",
            quality_s / tool_s <= 1.0,
        ),
    ]
    print(
        f"\n{base.path.name} ({opts.model}), {opts.threads} threads, n_batch {settings.n_batch}, "
        f"PPL text {text.name} ({quality.n_chunks} chunks x {ppl.n_ctx}), medians of "
        f"{opts.repeats} alternated runs"
    )
    print("| work | quantgate | llama.cpp's tool / previous | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for work, mine, other, ratio, target, met in rows:
        print(f"| {work} | {mine} | {other} | {ratio:.2f} | {target} | {'yes' if met else 'NO'} |")
    print(f"\nlargest per-request difference from the previous scoring: {worst:.2e} nats")
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
