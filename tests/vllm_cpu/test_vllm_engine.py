"""The vllm backend on a real engine (vLLM's CPU backend), one engine for the module: the
engine arguments the GPU entries build, greedy generation, the throughput protocol's calls,
lm-eval's vllm model scoring with the backend's own engine, its log-likelihoods against the
transformers backend's on the same checkpoint, and an engine that dies."""

from __future__ import annotations

import os
import signal

import pytest

from quantgate.artifacts.store import ArtifactStore
from quantgate.backends.vllm import EngineDied, VllmBackend, engine_args
from quantgate.configuration.registry import load_registry
from quantgate.errors import ConfigError
from support.helpers import REPO, hellaswag_requests

MODEL = "smollm2_vllm"


@pytest.fixture(scope="module")
def registry():
    return load_registry(REPO / "fixtures" / "models.yaml")


@pytest.fixture(scope="module")
def backend(registry):
    artifact = ArtifactStore(registry).baseline(MODEL)
    # float32 here (the entry serves bfloat16): the agreement with torch is then arithmetic
    # order alone, a bound of 1e-3 nats; bfloat16 would measure its own rounding instead
    settings = registry.models[MODEL].backend_settings.model_copy(update={"dtype": "float32"})
    backend = VllmBackend(artifact, settings)
    yield backend
    backend.close()


def _engine_cores() -> list:
    import psutil

    return [p for p in psutil.Process().children() if "EngineCore" in " ".join(p.cmdline())]


def test_every_vllm_entrys_engine_arguments_are_accepted_by_the_installed_vllm(registry):
    """The GPU night's entries (tensor and pipeline parallel, Ray, FP8, bf16) build their
    arguments here as they will there; vLLM's own argument class takes them (a renamed or
    removed argument is a TypeError) and its parser knows each name."""
    from vllm.engine.arg_utils import EngineArgs

    from quantgate.artifacts.store import Artifact

    entries = {k: m for k, m in registry.models.items() if m.backend == "vllm"}
    assert MODEL in entries and len(entries) > 3, sorted(entries)
    for key, entry in entries.items():
        stub = Artifact(key, REPO, "0" * 64, None, {})  # type: ignore[arg-type]
        args = engine_args(stub, entry.backend_settings)
        EngineArgs(**args)  # a TypeError names an argument this vLLM does not take


def test_greedy_generation_and_the_throughput_calls(backend):
    prompt = backend.tokenize("The capital of France is")
    out = backend.generate(prompt, 8)
    assert 0 < len(out) <= 8
    assert backend.generate(prompt, 8) == out  # greedy: the same tokens again
    assert "Paris" in backend.detokenize(out)
    stop = backend.generate(prompt, 8, stop_ids=[out[1]])
    assert len(stop) == 2  # vLLM keeps the stop token it met (lm-eval strips it)
    backend.process_prompt(prompt)  # raises unless vLLM reset its prefix cache first
    backend.decode_one_by_one(prompt)
    with pytest.raises(ConfigError, match="top-k logprobs"):
        backend.logits(prompt)


def test_lm_eval_scores_with_the_backends_engine(backend):
    lm = backend.lm_eval_model()
    assert lm.model is backend.llm, "lm-eval built an engine of its own"
    assert lm.batch_size == "auto"
    assert len(_engine_cores()) == 1, "a second engine core is running"


def test_the_engine_measures_its_own_processes_memory_as_it_loads(backend):
    """The footprint's peak RSS is the engine core's (the model lives there), not this test
    process's (which imports torch, vLLM and lm-eval but holds no weights): in float32, above
    the weights' 540 MB."""
    from quantgate.backends.vllm import engine_pids

    (core,) = _engine_cores()
    pids = engine_pids(backend.llm)
    # the engine core and what it started (measured: one child process beside it)
    assert core.pid in pids and pids <= {core.pid, *(c.pid for c in core.children(True))}
    assert os.getpid() not in pids
    measured = backend.deployed_memory
    assert measured is not None and measured["peak_vram_mib"] is None  # on a CPU
    assert measured["peak_rss_mib"] > 540, measured


#: float32 on both sides (vLLM's CPU kernels and torch's): the two summation orders leave
#: ~1e-5 nats on a ~20-token ending; the bound keeps a 100x margin, as tests/e2e/
#: test_hf_agreement.py does for llama.cpp against transformers
FLOAT32_AGREEMENT = 1e-3


def test_loglikelihoods_agree_with_the_transformers_backend(backend, registry):
    """The same checkpoint, the same lm-eval requests (8 HellaSwag items, 32 endings): vLLM's
    prompt logprobs against transformers' full softmax, both in float32."""
    from quantgate.backends.transformers import TransformersBackend
    from quantgate.configuration.backend_settings import TransformersSettings

    requests = hellaswag_requests(8)
    ours = backend.lm_eval_model().loglikelihood(requests, disable_tqdm=True)
    reference = TransformersBackend(backend.artifact, TransformersSettings(n_ctx=512))
    theirs = reference.lm_eval_model().loglikelihood(requests, disable_tqdm=True)
    diffs = sorted(abs(a[0] - b[0]) for a, b in zip(ours, theirs, strict=True))
    print(f"max |vLLM - transformers| over {len(diffs)} requests: {diffs[-1]:.2e} nats")
    assert diffs[-1] <= FLOAT32_AGREEMENT, diffs[-3:]
    assert [a[1] for a in ours] == [b[1] for b in theirs]  # greedy flags


def test_an_engine_that_dies_fails_its_pair_in_one_line(backend):
    """Last in this module: it kills the module's engine. vLLM raises EngineDeadError in the
    caller (its engine core is a process of its own); the backend says it in one line."""
    (core,) = _engine_cores()
    os.kill(core.pid, signal.SIGKILL)
    core.wait(timeout=60)
    with pytest.raises(EngineDied) as err:
        backend.generate(backend.tokenize("Hello"), 4)
    message = str(err.value)
    assert "\n" not in message and "vLLM's engine process died" in message
    assert backend.artifact.label in message
