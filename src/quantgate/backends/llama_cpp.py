"""llama-cpp-python, in process: GGUF files on CPU (and GPU offload where built for it)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np

from quantgate.artifacts import Artifact
from quantgate.backends.base import Backend
from quantgate.errors import ArtifactError, EvaluationError
from quantgate.perplexity import log_softmax
from quantgate.registry import BackendSettings


def _load_llama(artifact: Artifact, settings: BackendSettings, logits_all: bool):  # -> Llama
    import llama_cpp
    from llama_cpp import Llama

    kv_type = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}[
        settings.kv_cache_type
    ]
    threads = settings.n_threads or os.cpu_count() or 1
    try:
        return Llama(
            model_path=str(artifact.path),
            n_ctx=settings.n_ctx,
            n_batch=settings.n_batch,
            n_ubatch=settings.n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=logits_all,
            seed=settings.seed,
            type_k=kv_type,
            type_v=kv_type,
            n_gpu_layers=settings.n_gpu_layers,
            verbose=False,
        )
    except ValueError as exc:  # llama-cpp-python: "Failed to load model from file: ..."
        raise ArtifactError(
            f"{artifact.label}: llama.cpp could not load {artifact.path}: {exc}"
        ) from None


def _common_prefix(cached: np.ndarray, tokens: list[int], limit: int) -> int:
    """Length of the common prefix of ``cached`` and ``tokens``, at most ``limit``."""
    n = min(len(cached), len(tokens), limit)
    if n <= 0:
        return 0
    differs = np.nonzero(np.asarray(cached[:n]) != np.asarray(tokens[:n]))[0]
    return int(differs[0]) if len(differs) else n


class LlamaCppBackend(Backend):
    """Two contexts on one mmapped model file.

    ``_scoring`` keeps logits for every position (``logits_all``), which perplexity and KLD need.
    ``_serving`` keeps only the last row, like llama-bench and llama-cli, so throughput is not
    charged for an output projection over every prompt token.
    """

    name = "llama_cpp"

    def __init__(self, artifact: Artifact, settings: BackendSettings) -> None:
        super().__init__(artifact, settings)
        self._scoring = self._load(logits_all=True)
        #: tokens run through the model by score_continuations (the KV-reuse benchmark reads it)
        self.tokens_evaluated = 0

    def _load(self, logits_all: bool):  # -> llama_cpp.Llama
        return _load_llama(self.artifact, self.settings, logits_all)

    @classmethod
    def run_as_deployed(cls, artifact: Artifact, settings: BackendSettings, prompt: str) -> None:
        # one context that keeps the last logits row only, as a deployment would (the gate's
        # backend keeps two contexts, one with every row's logits, for scoring)
        llm = _load_llama(artifact, settings, logits_all=False)
        llm.eval(llm.tokenize(prompt.encode())[:32])

    @cached_property
    def _serving(self):  # -> llama_cpp.Llama
        return self._load(logits_all=False)

    @property
    def n_vocab(self) -> int:
        return int(self._scoring.n_vocab())

    @property
    def bos_token_id(self) -> int | None:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self._scoring.model)
        return int(self._scoring.token_bos()) if llama_cpp.llama_vocab_get_add_bos(vocab) else None

    @property
    def eos_token_id(self) -> int:
        return int(self._scoring.token_eos())

    @property
    def chat_template(self) -> str | None:
        """The GGUF's tokenizer.chat_template (None when the file has none)."""
        return self._scoring.metadata.get("tokenizer.chat_template") or None

    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        """``parse_special``: markers such as <|im_start|> in the text are single tokens (as
        HF tokenizers read a rendered chat template)."""
        return list(
            self._scoring.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
        )

    def _check_fits(self, n: int) -> None:
        if n > self.settings.n_ctx:
            raise ValueError(f"{n} tokens do not fit n_ctx={self.settings.n_ctx}")

    def _scoring_context(self):  # -> llama_cpp.Llama
        """The scoring context; under xdist at the cores the computing workers share now."""
        llm = self._scoring
        if self.shared_cores:
            import llama_cpp

            from quantgate.quiet import evaluation_threads

            n = evaluation_threads()
            if n != getattr(self, "_eval_threads", None):
                llama_cpp.llama_set_n_threads(llm._ctx.ctx, n, n)
                self._eval_threads = n
        return llm

    def logits(self, tokens: Sequence[int], start: int = 0) -> np.ndarray:
        self._check_fits(len(tokens))
        llm = self._scoring_context()
        llm.reset()
        llm.eval(list(tokens))
        return np.array(llm.scores[start : len(tokens)], dtype=np.float32)

    def score_continuations(
        self, context: Sequence[int], continuations: Sequence[Sequence[int]]
    ) -> list[tuple[float, bool]]:
        """Sum of log-probs of each continuation after ``context``, and whether it is the greedy
        continuation. The context is evaluated once; each continuation reuses its KV cache
        (llama.cpp keeps the cache up to ``n_tokens`` and ``eval`` drops what lies beyond).

        Raises:
            EvaluationError: NaN/inf logits.
        """
        if not context:
            raise ValueError("an empty context has nothing to condition on: prepend BOS/EOS")
        self._check_fits(len(context) + max((len(c) for c in continuations), default=0) - 1)
        llm = self._scoring_context()
        context = list(context)
        # Prefix caching: items of a task often share a preamble (truthfulqa's six QA pairs,
        # few-shot examples). Keep the KV cache of the tokens this context shares with what was
        # evaluated last, and evaluate only the rest (at least the last token, whose logits row
        # scores the first continuation token).
        keep = _common_prefix(llm.input_ids[: llm.n_tokens], context, len(context) - 1)
        llm.n_tokens = keep  # eval drops the KV cache beyond n_tokens
        llm.eval(context[keep:])
        self.tokens_evaluated += len(context) - keep
        n = len(context)
        results = []
        for cont in continuations:
            if not cont:
                raise ValueError("an empty continuation has no log-likelihood")
            llm.n_tokens = n  # rewind to the end of the shared context
            if len(cont) > 1:
                llm.eval(list(cont[:-1]))
                self.tokens_evaluated += len(cont) - 1
            rows = np.asarray(llm.scores[n - 1 : n - 1 + len(cont)], dtype=np.float32)
            if not np.isfinite(rows).all():
                raise EvaluationError(f"{self.artifact.label}: NaN/inf logits while scoring")
            logp = log_softmax(rows)
            target = np.asarray(cont)
            picked = logp[np.arange(len(cont)), target]
            results.append((float(picked.sum()), bool((logp.argmax(axis=1) == target).all())))
        return results

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._scoring.detokenize(list(tokens), special=False).decode("utf-8", "replace")

    def generate(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
        stop_text: Sequence[str] = (),
    ) -> list[int]:
        self._check_fits(len(prompt) + max_new_tokens)
        import llama_cpp

        llm = self._serving
        threads = self.settings.n_threads or os.cpu_count() or 1
        llama_cpp.llama_set_n_threads(llm._ctx.ctx, threads, threads)
        llm.reset()
        llm.eval(list(prompt))
        out: list[int] = []
        eos = {int(llm.token_eos()), *stop_ids}
        stops = [s for s in stop_text if s]
        for _ in range(max_new_tokens):
            # greedy: argmax of the last row (temperature 0, top_k 1). The serving context keeps
            # no scores (llama-cpp-python only copies logits when logits_all is on): read
            # llama.cpp's buffer for the last token directly.
            token = int(np.argmax(self._last_logits(llm)))
            if token in eos:
                break
            out.append(token)
            if stops and any(s in self.detokenize(out) for s in stops):
                break
            llm.eval([token])
        return out

    def _last_logits(self, llm) -> np.ndarray:
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _timed_context(self):  # -> llama_cpp.Llama
        """The serving context at the timing thread count (llama_set_n_threads, per call:
        generate may have set it back)."""
        import llama_cpp

        llm = self._serving
        n = self.timing_threads or self.settings.n_threads or os.cpu_count() or 1
        llama_cpp.llama_set_n_threads(llm._ctx.ctx, n, n)
        return llm

    def process_prompt(self, tokens: Sequence[int]) -> None:
        self._check_fits(len(tokens))
        llm = self._timed_context()
        llm.reset()
        llm.eval(list(tokens))

    def decode_one_by_one(self, tokens: Sequence[int]) -> None:
        self._check_fits(len(tokens))
        llm = self._timed_context()
        llm.reset()
        for token in tokens:
            llm.eval([token])

    def lm_eval_model(self) -> Any:
        from quantgate.lm_eval_model import LlamaCppLM

        return LlamaCppLM(backend=self)

    def close(self) -> None:
        for llm in (self.__dict__.pop("_serving", None), self.__dict__.pop("_scoring", None)):
            if llm is not None:
                llm.close()
