"""lm-eval's ``quantgate-llama-cpp`` model: a GGUF file scored in process by llama-cpp-python
(quantgate.backends.llama_cpp_lm), for lm-eval's CLI::

    lm_eval --model quantgate-llama-cpp --model_args model_path=/path/model.gguf,n_ctx=2048 \\
        --tasks hellaswag

(the CLI needs ``import quantgate.backends.lm_eval_model`` first: ``python -m
quantgate.backends.lm_eval_cli``). The gate itself builds the model around its loaded backend
(``LlamaCppBackend.lm_eval_model``).
"""

from __future__ import annotations

from pathlib import Path

from lm_eval.api.registry import register_model

from quantgate.artifacts.cache import sha256_file
from quantgate.artifacts.gguf_file import inspect_gguf
from quantgate.artifacts.store import Artifact
from quantgate.backends.llama_cpp import LlamaCppBackend
from quantgate.backends.llama_cpp_lm import MODEL_NAME, LlamaCppBackendLM, ScoringBackend
from quantgate.configuration.backend_settings import LlamaCppSettings
from quantgate.night.machine import available_cores


@register_model(MODEL_NAME)
class LlamaCppLM(LlamaCppBackendLM):
    """Args (lm-eval ``--model_args``): model_path, n_ctx, n_batch, n_threads, seed,
    max_gen_toks (default 256), kv_cache_type (f16 | f32); or an already loaded ``backend``."""

    def __init__(
        self,
        model_path: str | None = None,
        n_ctx: int = 2048,
        n_batch: int = 512,
        n_threads: int | None = None,
        seed: int = 1234,
        max_gen_toks: int = 256,
        kv_cache_type: str = "f16",
        backend: ScoringBackend | None = None,
        **_ignored: object,
    ) -> None:
        if backend is None:
            if not model_path:
                raise ValueError(f"{MODEL_NAME}: pass model_args model_path=/path/to/model.gguf")
            path = Path(model_path)
            artifact = Artifact(path.stem, path, sha256_file(path), inspect_gguf(path, path.stem))
            backend = LlamaCppBackend(
                artifact,
                LlamaCppSettings(
                    n_ctx=int(n_ctx),
                    n_batch=int(n_batch),
                    n_threads=int(n_threads) if n_threads else available_cores(),
                    seed=int(seed),
                    kv_cache_type=kv_cache_type,
                ),
            )
        super().__init__(backend, max_gen_toks)
