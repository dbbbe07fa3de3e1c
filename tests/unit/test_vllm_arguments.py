"""The vLLM argument builder: parallelism passes through, and the GPU backend serves the
checkpoint it is given (no vLLM import)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantgate.artifacts import Artifact
from quantgate.backend_settings import VllmSettings
from quantgate.backends.vllm import engine_args, lm_eval_model_args
from quantgate.errors import ConfigError
from quantgate.registry import load_registry
from support.helpers import REPO


def test_vllm_engine_args_pass_parallelism_through():
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    entry = registry.models["llama31_405b"]
    artifact = Artifact("x", Path("/models/405b"), "0" * 64, None, {})  # type: ignore[arg-type]
    args = engine_args(artifact, entry.backend_settings)
    assert args["tensor_parallel_size"] == 8 and args["pipeline_parallel_size"] == 2
    assert args["distributed_executor_backend"] == "ray"
    assert args["trust_remote_code"] is False and args["max_model_len"] == 8192
    assert "pretrained=/models/405b" in lm_eval_model_args(artifact, entry.backend_settings)
    # two GPUs on one node and no executor named: vLLM's multiprocessing one
    two = VllmSettings(tensor_parallel_size=2)
    assert engine_args(artifact, two)["distributed_executor_backend"] == "mp"
    quantized = Artifact("q", Path("/m"), "0" * 64, None, {"quantization": {"library": "quanto"}})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="load_quantized \\(quanto\\) runs on transformers"):
        engine_args(quantized, two)


def test_vllm_backend_serves_the_checkpoint_on_a_gpu():
    pytest.importorskip("vllm", reason="vLLM is GPU-only: it is installed by `tox -e gpu` alone")
    from quantgate.artifacts import ArtifactStore
    from quantgate.backends.vllm import VllmBackend

    registry = load_registry(REPO / "fixtures" / "models.yaml")
    artifact = ArtifactStore(registry).baseline("smollm2_hf")
    backend = VllmBackend(artifact, VllmSettings(n_ctx=512, dtype="auto", device="cuda"))
    prompt = backend.tokenize("The capital of France is")
    assert backend.generate(prompt, 8)
    backend.process_prompt(prompt)
    backend.decode_one_by_one(prompt)
    with pytest.raises(ConfigError, match="top-k logprobs"):
        backend.logits(prompt)
