"""vLLM, for the nightly GPU tier: lm-eval's ``vllm`` model for benchmarks and vLLM's ``LLM`` for
throughput. Multi-GPU and multi-node runs use vLLM's own engine (tensor / pipeline parallelism,
Ray), configured from the registry's backend_settings; nothing here splits a model itself.

vLLM is GPU-only: it is installed by the ``gpu`` tox env alone. The argument builders below are
plain functions, unit-tested on CPU; the backend imports vllm only when constructed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from quantgate.artifacts import Artifact
from quantgate.backend_settings import BackendSettings
from quantgate.backends.base import Backend
from quantgate.errors import ConfigError


def engine_args(artifact: Artifact, settings: BackendSettings) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` (and lm-eval's ``vllm`` model) for one artifact."""
    args: dict[str, Any] = {
        "model": str(artifact.path),
        "dtype": settings.dtype,
        "seed": settings.seed,
        "max_model_len": settings.n_ctx,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "pipeline_parallel_size": settings.pipeline_parallel_size,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "trust_remote_code": settings.trust_remote_code,
    }
    if settings.distributed_executor_backend is not None:
        args["distributed_executor_backend"] = settings.distributed_executor_backend
    elif settings.tensor_parallel_size * settings.pipeline_parallel_size > 1:
        # several GPUs: vLLM picks mp on one node; a multi-node run must say "ray" explicitly
        args["distributed_executor_backend"] = "mp"
    spec = artifact.notes.get("quantization")
    if spec is not None:
        raise ConfigError(
            f"{artifact.label}: load_quantized ({spec.get('library')}) runs on transformers; "
            "vLLM serves checkpoints quantized ahead of time (prebuilt AWQ/GPTQ/FP8 repos)"
        )
    return args


def lm_eval_model_args(artifact: Artifact, settings: BackendSettings) -> str:
    """The ``--model_args`` string of ``lm_eval --model vllm`` for the same engine."""
    args = engine_args(artifact, settings)
    args["pretrained"] = args.pop("model")
    return ",".join(f"{k}={v}" for k, v in args.items())


@contextlib.contextmanager
def reusing_engine(module: Any, engine: Any, args: dict[str, Any]) -> Iterator[None]:
    """``module.LLM(**kw)`` returns ``engine`` (once, for the arguments ``args`` built it with)
    inside the block."""
    expected = dict(args)
    built = module.LLM

    def same_engine(**kw: Any) -> Any:
        differs = sorted(k for k, v in expected.items() if kw.get(k, v) != v)
        if differs:
            raise ConfigError(
                f"lm-eval asked vLLM for another engine than the loaded one ({', '.join(differs)} "
                "differ): quantgate.backends.vllm.engine_args and lm-eval disagree"
            )
        return engine

    module.LLM = same_engine
    try:
        yield
    finally:
        module.LLM = built


class VllmBackend(Backend):
    """Benchmarks (lm-eval's vllm model) and throughput (vllm.LLM) on GPUs.

    Full-vocabulary logits are not something vLLM returns (its logprobs are top-k), so the
    perplexity and KLD gates need the transformers or llama_cpp backend: asking for logits here
    is a clear error, not an approximation.
    """

    name = "vllm"
    #: an engine takes gpu_memory_utilization of every GPU it uses: two never fit at once
    one_per_process = True

    def __init__(self, artifact: Artifact, settings: BackendSettings) -> None:
        super().__init__(artifact, settings)
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError(
                f"{artifact.label}: backend vllm needs vLLM and a GPU: tox -e gpu"
            ) from None
        self.llm = LLM(**engine_args(artifact, settings))
        self._tokenizer = self.llm.get_tokenizer()

    @property
    def n_vocab(self) -> int:
        return len(self._tokenizer)

    @property
    def bos_token_id(self) -> int | None:
        return self._tokenizer.bos_token_id

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=add_special).input_ids)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._tokenizer.decode(list(tokens), skip_special_tokens=True)

    def logits(self, tokens: Sequence[int], start: int = 0) -> np.ndarray:
        raise ConfigError(
            f"{self.artifact.label}: vLLM gives top-k logprobs, not full logits; run the "
            "perplexity and kld gates with backend transformers or llama_cpp"
        )

    def _sampling(self, max_tokens: int, **kw: Any) -> Any:
        from vllm import SamplingParams

        return SamplingParams(temperature=0.0, top_k=1, max_tokens=max_tokens, **kw)

    def generate(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
        stop_text: Sequence[str] = (),
    ) -> list[int]:
        params = self._sampling(
            max_new_tokens, stop_token_ids=list(stop_ids), stop=list(stop_text) or None
        )
        (out,) = self.llm.generate({"prompt_token_ids": list(prompt)}, params, use_tqdm=False)
        return list(out.outputs[0].token_ids)

    def process_prompt(self, tokens: Sequence[int]) -> None:
        # every round sends the same prompt: with vLLM's prefix cache warm, a round would time
        # cache hits, not prompt processing (llama-bench starts each round from an empty cache)
        self.llm.reset_prefix_cache()
        self.llm.generate({"prompt_token_ids": list(tokens)}, self._sampling(1), use_tqdm=False)

    def decode_one_by_one(self, tokens: Sequence[int]) -> None:
        # vLLM decodes its own tokens: generate len(tokens) of them after a 1-token prompt
        params = self._sampling(len(tokens), ignore_eos=True)
        self.llm.generate({"prompt_token_ids": list(tokens[:1])}, params, use_tqdm=False)

    def lm_eval_model(self) -> Any:
        """lm-eval's own ``vllm`` model around this backend's engine. Its constructor builds
        an ``LLM`` of its own, and a second engine on the same GPUs is refused (not enough free
        memory): while it runs, the name it calls answers with this engine instead, after
        checking lm-eval asked for the same engine."""
        from lm_eval.models import vllm_causallms

        args = engine_args(self.artifact, self.settings)
        with reusing_engine(vllm_causallms, self.llm, args):
            # "auto": every request of a task in one generate call, vLLM's scheduler batches
            # them (lm-eval's default of 1 sends one request at a time)
            return vllm_causallms.VLLM(pretrained=args.pop("model"), batch_size="auto", **args)

    def close(self) -> None:
        self.__dict__.pop("llm", None)
