"""The interface every backend implements (llama-cpp-python today; transformers, vLLM next)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from quantgate import llama_placement
from quantgate.artifacts.store import Artifact
from quantgate.configuration.backend_settings import BackendSettings, flat_settings
from quantgate.versions import backend_versions

#: settings that do not enter cache keys as they are: the thread count (verdicts are shown to
#: hold across thread counts: benchmarks/perturbations.py), and allow_amx, which enters as the
#: placement it leads to on this machine (the same numbers where the CPU has no AMX)
_NOT_KEYED = ("n_threads", "allow_amx")


def result_settings(backend_name: str, settings: BackendSettings) -> dict[str, object]:
    """What changes a backend's computed numbers, for cache keys: its settings, the versions
    and build of the libraries that compute them (quantgate.versions), and for llama.cpp where
    its weights are placed when that is not its own default (llama_placement: AMX kernels,
    or no repacking, compute other sums)."""
    keyed = {k: v for k, v in flat_settings(settings).items() if k not in _NOT_KEYED}
    placement = backend_placement(backend_name, settings)
    return {
        "backend": backend_name,
        **keyed,
        "versions": backend_versions(backend_name),
        **({"placement": placement} if placement != "default" else {}),
    }


def backend_placement(backend_name: str, settings: BackendSettings) -> str:
    """Where ``backend_name`` puts weights with ``settings`` on this machine: llama.cpp's
    placement (quantgate.llama_placement), "default" for the others."""
    if backend_name != "llama_cpp":
        return "default"
    return llama_placement.current(bool(getattr(settings, "allow_amx", False)))


class ScoredModel(Protocol):
    """What the evaluators (quantgate.evaluation.quality, quantgate.evaluation.retention) use of a
    model: what their caches key on, and the scoring calls they make only when a cache misses. A
    ``Backend`` is one; so is quantgate.evaluation.loading.LazyBackend, which loads on the first
    call."""

    artifact: Artifact
    settings: BackendSettings
    name: str

    @property
    def n_vocab(self) -> int: ...
    @property
    def bos_token_id(self) -> int | None: ...
    def tokenize(self, text: str, add_special: bool = True) -> list[int]: ...
    def logits(self, tokens: Sequence[int], start: int = 0) -> np.ndarray: ...
    def lm_eval_model(self) -> Any: ...


class Backend(ABC):
    """One loaded artifact. Loaded once per session and shared by every test of its pair.

    Args:
        artifact: the checked file to load.
        settings: context size, batch size, threads, seed.
    """

    name: str = ""
    #: whether at most one of this backend's models may be loaded in a process (vLLM: each
    #: engine reserves most of the GPU's memory up front)
    one_per_process: bool = False

    #: whether the gate loads it in a child process of its own (quantgate.backends.child), so
    #: that a native crash fails its pair instead of ending the pytest session
    runs_in_child: bool = False

    def __init__(self, artifact: Artifact, settings: BackendSettings) -> None:
        self.artifact = artifact
        self.settings = settings
        #: threads for process_prompt / decode_one_by_one (timed sections run alone, so they
        #: may use more cores than evaluation shares); None: settings.n_threads
        self.timing_threads: int | None = None
        #: whether evaluation calls pick their thread count as they run (pytest-xdist with no
        #: thread count configured: quantgate.quiet.evaluation_threads)
        self.shared_cores = False
        #: the footprint's peak memory ({"peak_rss_mib", "peak_vram_mib"}), measured as the
        #: model loaded, by a backend whose model lives in processes of its own (vLLM's
        #: engine); None: quantgate.backends.rss_probe measures it in a fresh process
        self.deployed_memory: dict[str, float | None] | None = None

    @property
    @abstractmethod
    def n_vocab(self) -> int: ...

    @property
    @abstractmethod
    def bos_token_id(self) -> int | None:
        """The BOS id if the model's tokenizer adds one (llama_vocab_get_add_bos), else None."""

    @abstractmethod
    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Token ids of ``text``; ``add_special`` adds BOS where the model wants one."""

    @abstractmethod
    def logits(self, tokens: Sequence[int], start: int = 0) -> np.ndarray:
        """Raw logits, float32 ``[len(tokens) - start, n_vocab]``, from an empty context.

        Row ``j`` is the distribution of the token after ``tokens[start + j]``; ``start`` spares
        copying rows nobody scores (perplexity scores the second half of a chunk only).
        """

    @abstractmethod
    def detokenize(self, tokens: Sequence[int]) -> str: ...

    @abstractmethod
    def generate(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
        stop_text: Sequence[str] = (),
    ) -> list[int]:
        """Greedy continuation (temperature 0, top_k 1): deterministic for a given artifact.
        Stops at EOS, at a token in ``stop_ids``, or once the text holds a ``stop_text``."""

    @abstractmethod
    def process_prompt(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` as one prompt from an empty context (llama-bench ``pp``)."""

    @abstractmethod
    def decode_one_by_one(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` one at a time from an empty context (llama-bench ``tg``)."""

    def lm_eval_model(self) -> Any:
        """An lm-eval LM scoring with this backend (for the retention gate)."""
        return type(self).lm_eval_model_of(self)

    @classmethod
    def lm_eval_model_of(cls, backend: Backend) -> Any:
        """An lm-eval LM scoring through ``backend``'s interface alone: what a backend that
        runs in a child process (``runs_in_child``) must provide, so lm-eval runs here and
        only the scoring calls cross to the child."""
        raise NotImplementedError(f"backend {cls.name} does not serve lm-eval")

    @classmethod
    def prepare_process(cls, settings: BackendSettings) -> str:
        """Set this process up for the backend before its first load; return where its
        weights go (llama.cpp: keeps them off AMX unless allowed). The default: nothing."""
        return "default"

    @classmethod
    def run_as_deployed(
        cls, artifact: Artifact, settings: BackendSettings, prompt: str
    ) -> float | None:
        """Load ``artifact`` as a deployment would and evaluate the first 32 tokens of
        ``prompt``. Returns the deployment's peak RSS in KiB where the model lives in other
        processes than this one (vLLM's engine), else None: quantgate.backends.rss_probe then reads
        this process's own peak."""
        backend = cls(artifact, settings)
        backend.process_prompt(backend.tokenize(prompt)[:32])
        return None

    @classmethod
    def peak_device_bytes(cls) -> int | None:
        """This process's peak GPU memory as the backend's own allocator counts it; None: read
        it from the driver (NVML), as for backends that allocate up front."""
        return None

    def memory_bytes(self) -> int | None:
        """Bytes of the loaded weights when that differs from the file (load-time quantization),
        else None (the artifact's file size tells)."""
        return None

    def weight_sparsity(self) -> dict[str, float] | None:
        """``{"weight_sparsity_pct", "weight_2of4_pct"}`` of the loaded model's linear layers
        (quantgate.evaluation.sparsity), or None where the backend cannot read its weights as
        tensors."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model (GPU memory for GPU backends)."""
