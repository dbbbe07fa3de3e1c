"""lm-eval's model over a loaded llama-cpp-python backend: benchmarks score in process.

lm-eval's own ``gguf`` model is an HTTP client whose prompt log-probs come back shifted by one
against llama-cpp-python's server; this one scores in process. lm-eval's CLI reaches it as
``quantgate-llama-cpp`` (quantgate.backends.lm_eval_model, which loads the backend from a path).

Tokenization follows lm-eval's HF model: no BOS unless the GGUF says the model adds one,
trailing spaces of a context move to its continuation, the continuation is the tail of the
tokenized ``context + continuation``. Scoring goes through the backend's multi-sequence rounds
(``LlamaCppBackend.score_requests``): an item's choices share one evaluation of their context.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from lm_eval import utils
from lm_eval.api.model import TemplateLM
from tqdm import tqdm

from quantgate.backends.base import Backend

MODEL_NAME = "quantgate-llama-cpp"
#: requests per backend call: how often the progress bar moves (rounds span calls unharmed:
#: the shared prefix the last round retained carries over)
PROGRESS_STEP = 256


class ScoringBackend(Backend):
    """A backend this model scores with: a Backend that also scores whole lm-eval requests in
    rounds, and tells its EOS and chat template (LlamaCppBackend; quantgate.backends.child's
    proxy of one forwards the same calls)."""

    @property
    @abstractmethod
    def eos_token_id(self) -> int: ...

    @property
    @abstractmethod
    def chat_template(self) -> str | None: ...

    @abstractmethod
    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        """``parse_special``: chat-template markers like <|im_start|> become single tokens."""

    @abstractmethod
    def score_requests(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[tuple[float, bool]]:
        """(log-likelihood, greedy) of each (context, continuation)."""


class LlamaCppBackendLM(TemplateLM):
    """lm-eval's ``TemplateLM`` over ``backend``; ``max_gen_toks``: generation's default."""

    def __init__(self, backend: ScoringBackend, max_gen_toks: int = 256) -> None:
        super().__init__()
        self.backend = backend
        self._max_gen_toks = int(max_gen_toks)
        self._eot = backend.eos_token_id
        self._bos = backend.bos_token_id  # None unless the model adds BOS

    # -- TemplateLM plumbing -------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self._eot

    @property
    def prefix_token_id(self) -> int:
        return self._bos if self._bos is not None else self._eot

    @property
    def max_length(self) -> int:
        return self.backend.settings.n_ctx

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kwargs: object
    ) -> list[int]:
        add_bos = (
            bool(add_special_tokens) if add_special_tokens is not None else (self._bos is not None)
        )
        # special=True: chat-template markers like <|im_start|> are single tokens, as in HF
        return self.backend.tokenize(string, add_special=add_bos, parse_special=True)

    def tok_decode(self, tokens: list[int]) -> str:
        return self.backend.detokenize(tokens)

    # -- chat template (from the GGUF's tokenizer.chat_template) ---------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self.backend.artifact.label

    def _template(self) -> str:
        template = self.backend.chat_template
        if not template:
            raise ValueError(
                f"{self.backend.artifact.path} has no tokenizer.chat_template: "
                "set apply_chat_template: false for this benchmark"
            )
        return template

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self._template() if chat_template else None

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """Render the model's own Jinja chat template (sandboxed, as transformers does)."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self._template()).render(
            messages=chat_history,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.tok_decode([self.prefix_token_id]),
            eos_token=self.tok_decode([self.eot_token_id]),
        )

    # -- scoring -------------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs: object):
        """All requests through the backend's multi-sequence rounds, in lm-eval's order (an
        item's choices are adjacent, so their shared context is evaluated once)."""
        prepared = [self._truncate(list(ctx), list(cont)) for _, ctx, cont in requests]
        results: list[tuple[float, bool]] = []
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="loglikelihood")
        for lo in range(0, len(prepared), PROGRESS_STEP):
            scored = self.backend.score_requests(prepared[lo : lo + PROGRESS_STEP])
            for request, res in zip(requests[lo : lo + PROGRESS_STEP], scored, strict=True):
                self.cache_hook.add_partial("loglikelihood", request[0], res)
            results.extend(scored)
            bar.update(len(scored))
        bar.close()
        return results

    def _truncate(self, ctx: list[int], cont: list[int]) -> tuple[list[int], list[int]]:
        """As lm-eval's HF model: keep the last n_ctx + 1 tokens of context + continuation."""
        whole = (ctx + cont)[-(self.max_length + 1) :]
        keep_ctx = len(whole) - len(cont)
        if keep_ctx < 1:
            raise ValueError(
                f"{MODEL_NAME}: a continuation of {len(cont)} tokens does not fit "
                f"n_ctx={self.max_length}"
            )
        return whole[:keep_ctx], whole[keep_ctx:]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """lm-eval's disjoint rolling windows, all of a request's windows in one call."""
        out = []
        for (string,) in tqdm(
            [r.args for r in requests], disable=disable_tqdm, desc="loglikelihood_rolling"
        ):
            windows = map(
                utils.make_disjoint_window,
                utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string, add_special_tokens=False),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                ),
            )
            total = sum(logprob for logprob, _ in self.backend.score_requests(list(windows)))
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (temperature 0): lm-eval's ``until`` strings and ``max_gen_toks`` honoured."""
        out = []
        for context, gen_kwargs in tqdm(
            [r.args for r in requests], disable=disable_tqdm, desc="generate_until"
        ):
            kwargs = dict(gen_kwargs)
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.get("max_gen_toks", self._max_gen_toks))
            prompt = self.tok_encode(context)
            # as lm-eval's HF model: keep the prompt's tail, leaving room for max_gen_toks;
            # when max_gen_toks alone exceeds the context, generate until the context is full
            if max_new >= self.max_length:
                max_new = self.max_length - min(len(prompt), self.max_length // 2)
            prompt = prompt[-(self.max_length - max_new) :]
            tokens = self.backend.generate(prompt, max_new, stop_text=until)
            text = self.backend.detokenize(tokens)
            for stop in until:
                if stop and stop in text:
                    text = text[: text.index(stop)]
            out.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return out
