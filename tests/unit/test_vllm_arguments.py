"""The vLLM argument builder: parallelism passes through, and the GPU backend serves the
checkpoint it is given (no vLLM import)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantgate.artifacts.store import Artifact
from quantgate.backends.vllm import check_build, engine_args, lm_eval_model_args
from quantgate.configuration.backend_settings import VllmSettings
from quantgate.configuration.registry import load_registry
from quantgate.errors import ConfigError
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


def test_cpu_engine_arguments_are_set_only_where_an_entry_asks():
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    artifact = Artifact("x", Path("/m"), "0" * 64, None, {})  # type: ignore[arg-type]
    cpu = registry.models["smollm2_vllm"].backend_settings
    args = engine_args(artifact, cpu)
    assert args["enforce_eager"] is True and args["kv_cache_memory_bytes"] == 2**30
    assert not cpu.on_gpu and registry.models["llama31_405b"].backend_settings.on_gpu
    gpu = engine_args(artifact, registry.models["openllm_llama31_8b"].backend_settings)
    assert "enforce_eager" not in gpu and "kv_cache_memory_bytes" not in gpu


@pytest.mark.parametrize(
    ("device", "version", "built_for", "says"),
    [
        ("cpu", None, None, "vLLM, which is not installed here: make vllm-env"),
        ("cuda", None, None, "vLLM, which is not installed here: tox -e gpu"),
        ("cpu", "0.11.2", "cpu", "vLLM 0.11.2 is older than 0.32"),
        (
            "cpu",
            "0.33.0",
            "cuda",
            "the installed vLLM 0.33.0 is built for cuda, this entry asks "
            "for device cpu: make vllm-env",
        ),
        ("cuda", "0.32.0", "cpu", "built for cpu, this entry asks for device cuda: tox -e gpu"),
    ],
)
def test_a_vllm_that_cannot_serve_the_entry_is_one_line_naming_the_env(
    device, version, built_for, says
):
    with pytest.raises(ConfigError) as err:
        check_build("smollm2_vllm-baseline", device, version, built_for)
    assert says in str(err.value) and "\n" not in str(err.value)
    check_build("x", "cpu", "0.32.0", "cpu")  # fits: no error
    check_build("x", "cuda", "0.33.0+cu130", "cuda")
