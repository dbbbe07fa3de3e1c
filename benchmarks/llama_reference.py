"""The scoring quantgate did before multi-sequence rounds, kept as the reference that
``LlamaCppBackend.score_requests`` is tested (tests/e2e/test_lm_eval_model.py) and timed
(benchmarks/scoring_speed.py) against.

One llama-cpp-python context with every row's logits (``logits_all``): each distinct context is
evaluated once (``eval`` keeps the KV cache up to ``n_tokens``), each continuation after it, and
the log-softmax is taken over the rows llama-cpp-python copied out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from quantgate.evaluation.perplexity import log_softmax


class ReferenceScorer:
    """Args: a GGUF path and the context's n_ctx, n_batch and threads."""

    def __init__(self, model_path: str, n_ctx: int, n_batch: int, n_threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(
            model_path=model_path,
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=True,
            verbose=False,
        )
        self.tokens_evaluated = 0

    def score_requests(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[tuple[float, bool]]:
        llm, out, last_ctx = self.llm, [], None
        for ctx, cont in requests:
            ctx = list(ctx)
            if ctx != last_ctx:
                llm.reset()
                llm.eval(ctx)
                self.tokens_evaluated += len(ctx)
                last_ctx = ctx
            n = len(ctx)
            llm.n_tokens = n  # rewind to the end of the shared context
            if len(cont) > 1:
                llm.eval(list(cont[:-1]))
                self.tokens_evaluated += len(cont) - 1
            logp = log_softmax(np.asarray(llm.scores[n - 1 : n - 1 + len(cont)]))
            target = np.asarray(cont)
            picked = logp[np.arange(len(cont)), target]
            out.append((float(picked.sum()), bool((logp.argmax(axis=1) == target).all())))
        return out

    def close(self) -> None:
        self.llm.close()
