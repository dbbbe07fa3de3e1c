"""The lm-eval model over the in-process llama.cpp backend, on the real SmolLM2 baseline."""

from __future__ import annotations

import numpy as np
import pytest

from quantgate.evaluation.perplexity import log_softmax
from support.helpers import REPO, Request, hellaswag_requests

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def lm(smollm2_artifacts):
    from quantgate.backends.lm_eval_model import LlamaCppLM

    baseline, _ = smollm2_artifacts
    return LlamaCppLM(model_path=str(baseline.path), n_ctx=512, n_threads=2)


def test_registered_with_lm_eval():
    from lm_eval.api.registry import get_model

    from quantgate.backends.lm_eval_model import MODEL_NAME, LlamaCppLM

    assert get_model(MODEL_NAME) is LlamaCppLM


def test_shared_context_scores_equal_full_passes(lm):
    """Reusing the context's KV cache gives the same log-likelihoods as scoring each
    context + continuation from scratch, with fewer tokens evaluated."""
    context = "A man is sitting on a roof. He"
    endings = [
        " is using wrap to wrap a pair of skis.",
        " is ripping level tiles off.",
        " is holding a rubik's cube.",
        " starts pulling up roofing on a roof.",
    ]
    before = lm.backend.tokens_evaluated
    results = lm.loglikelihood([Request(context, e) for e in endings], disable_tqdm=True)
    evaluated = lm.backend.tokens_evaluated - before
    naive_tokens = 0
    for ending, (logprob, _) in zip(endings, results, strict=True):
        ctx, cont = lm._encode_pair(context, ending)
        logp = log_softmax(lm.backend.logits(ctx + cont))
        expected = sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont))
        assert logprob == pytest.approx(float(expected), abs=1e-4)
        naive_tokens += len(ctx) + len(cont)
    assert evaluated < 0.6 * naive_tokens


def test_greedy_flag_and_rolling(lm):
    ((logprob, greedy),) = lm.loglikelihood(
        [Request("The capital of France is", " Paris")], disable_tqdm=True
    )
    assert greedy and -3 < logprob < 0
    (total,) = lm.loglikelihood_rolling([Request("The cat sat on the mat.")], disable_tqdm=True)
    assert np.isfinite(total) and total < 0


def test_generate_until_honours_stop_and_length(lm):
    (text,) = lm.generate_until(
        [Request("The capital of France is", {"until": ["."], "max_gen_toks": 20})],
        disable_tqdm=True,
    )
    assert text == " Paris"
    (text,) = lm.generate_until(
        [Request("The capital of France is", {"until": ["\n\n\n"], "max_gen_toks": 3})],
        disable_tqdm=True,
    )
    assert len(lm.tok_encode(text)) <= 3


def test_prompts_sharing_a_prefix_generate_as_from_an_empty_context(lm):
    """generate evaluates only what follows the prefix the context already holds (GSM8K's five
    worked examples, 90 % of each prompt): the tokens are those of a fresh prefill."""
    import json

    gsm8k = REPO / "fixtures" / "data" / "gsm8k"
    shots = [
        json.loads(x) for x in (gsm8k / "test_last20_fewshot.jsonl").read_text().split("\n")[:2]
    ]
    docs = [json.loads(x) for x in (gsm8k / "test_first100.jsonl").read_text().split("\n")[:3]]
    preamble = "".join(f"Question: {d['question']}\nAnswer: {d['answer']}\n\n" for d in shots)
    backend = lm.backend
    prompts = [lm.tok_encode(f"{preamble}Question: {d['question']}\nAnswer:") for d in docs]
    reused = [backend.generate(p, 24, stop_text=["Question:"]) for p in prompts]
    assert backend._llama.n_tokens > len(prompts[-1])  # the last prompt and its answer, held
    fresh = []
    for p in prompts:
        backend._llama.reset()
        fresh.append(backend.generate(p, 24, stop_text=["Question:"]))
    assert reused == fresh and all(reused)


def test_chat_template_comes_from_the_gguf(lm):
    """apply_chat_template renders the GGUF's tokenizer.chat_template (SmolLM2: ChatML with a
    default system prompt), so `apply_chat_template: true` benchmarks work in process."""
    text = lm.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert lm.chat_template(True) and lm.chat_template(False) is None


def test_shared_prefix_is_evaluated_once_and_scores_as_from_scratch(lm):
    # truthfulqa-style: every item starts with the same preamble
    preamble = "Q: What is the capital of France?\nA: Paris.\n\nQ: What is 2 + 2?\nA: 4.\n\n"
    backend = lm.backend
    first = preamble + "Q: What colour is the sky?\nA:"
    second = preamble + "Q: Where do penguins live?\nA:"
    lm.loglikelihood([Request(first, " Blue.")], disable_tqdm=True)
    before = backend.tokens_evaluated
    ((logprob, _),) = lm.loglikelihood([Request(second, " Antarctica.")], disable_tqdm=True)
    ctx, cont = lm._encode_pair(second, " Antarctica.")
    # the preamble is most of the context: only what follows it was evaluated (+ continuation)
    assert backend.tokens_evaluated - before < len(ctx) // 2 + len(cont)
    logp = log_softmax(backend.logits(ctx + cont))  # from an empty cache
    expected = sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont))
    assert logprob == pytest.approx(float(expected), abs=1e-4)


def test_rounds_agree_with_the_previous_scoring_within_a_batch_size_changes_noise(
    lm, smollm2_artifacts
):
    """Multi-sequence rounds against the scoring they replaced (quantgate.backends.
    llama_reference: one request after another, KV reuse per context). Both compute the same
    sums with F16 rounding in an order the batch shape decides; each one's noise is measured
    here as the largest change a batch-size change makes to it (the previous scoring at 512
    tokens a decode and at one; the rounds at 512 and at 32). By the triangle inequality the
    two may differ by at most the sum, per request; every item's chosen ending is the same
    unless its top two endings are closer than that."""
    from benchmarks.llama_reference import ReferenceScorer

    from quantgate.backends.lm_eval_model import LlamaCppLM

    baseline, _ = smollm2_artifacts
    requests = [lm._encode_pair(*r.args) for r in hellaswag_requests(12)]
    ours = np.array([lp for lp, _ in lm.backend.score_requests(requests)])
    small = LlamaCppLM(model_path=str(baseline.path), n_ctx=512, n_batch=32, n_threads=2)
    ours_small = np.array([lp for lp, _ in small.backend.score_requests(requests)])
    small.backend.close()
    previous = {}
    for n_batch in (512, 1):
        scorer = ReferenceScorer(str(baseline.path), 512, n_batch, 2)
        previous[n_batch] = np.array([lp for lp, _ in scorer.score_requests(requests)])
        scorer.close()
    noise = float(np.abs(previous[1] - previous[512]).max() + np.abs(ours_small - ours).max())
    assert 0 < noise < 0.1  # rounding, not a broken path
    assert float(np.abs(ours - previous[512]).max()) <= noise
    for item in range(12):
        mine, theirs = ours[4 * item : 4 * item + 4], previous[512][4 * item : 4 * item + 4]
        top_two = np.sort(theirs)[-2:]
        if top_two[1] - top_two[0] > noise:
            assert mine.argmax() == theirs.argmax(), f"item {item}"


def test_a_long_request_spans_several_decodes_and_rolling_windows_score_as_one_pass(
    smollm2_artifacts,
):
    """With n_batch 64, a 512-token window decodes in eight parts of one round; the rolling
    windows of a text longer than n_ctx sum to the per-window scores of full passes."""
    from lm_eval import utils

    from quantgate.backends.lm_eval_model import LlamaCppLM

    baseline, _ = smollm2_artifacts
    lm = LlamaCppLM(model_path=str(baseline.path), n_ctx=512, n_batch=64, n_threads=2)
    wiki = REPO / "fixtures" / "data" / "wikitext2" / "wiki.test.excerpt.raw"
    text = wiki.read_text()[:6000].strip()
    tokens = lm.tok_encode(text, add_special_tokens=False)
    assert len(tokens) > lm.max_length + 100
    (total,) = lm.loglikelihood_rolling([Request(text)], disable_tqdm=True)
    expected = 0.0
    windows = utils.get_rolling_token_windows(
        token_list=tokens, prefix_token=lm.prefix_token_id, max_seq_len=lm.max_length, context_len=1
    )
    for ctx, cont in map(utils.make_disjoint_window, windows):
        logp = log_softmax(lm.backend.logits(ctx + cont[:-1]))
        expected += float(logp[np.arange(len(ctx) - 1, len(ctx) + len(cont) - 1), cont].sum())
    assert total == pytest.approx(expected, abs=1e-2)
    lm.backend.close()
