"""The lm-eval model over the in-process llama.cpp backend, on the real SmolLM2 baseline."""

from __future__ import annotations

import numpy as np
import pytest

from quantgate.perplexity import log_softmax

pytestmark = pytest.mark.real_model


class Request:
    """The part of lm-eval's Instance the model reads."""

    def __init__(self, *args):
        self.args = args


@pytest.fixture(scope="module")
def lm(smollm2_artifacts):
    from quantgate.lm_eval_model import LlamaCppLM

    baseline, _ = smollm2_artifacts
    return LlamaCppLM(model_path=str(baseline.path), n_ctx=512, n_threads=2)


def test_registered_with_lm_eval():
    from lm_eval.api.registry import get_model

    from quantgate.lm_eval_model import MODEL_NAME, LlamaCppLM

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
