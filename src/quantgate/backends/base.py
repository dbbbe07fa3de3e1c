"""The interface every backend implements (llama-cpp-python today; transformers, vLLM next)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from quantgate.artifacts import Artifact
from quantgate.backend_settings import BackendSettings, flat_settings
from quantgate.versions import backend_versions


def result_settings(backend_name: str, settings: BackendSettings) -> dict[str, object]:
    """What changes a backend's computed numbers, for cache keys: its settings but the thread
    count (verdicts are shown to hold across thread counts: benchmarks/perturbations.py), and
    the versions and build of the libraries that compute them (quantgate.versions)."""
    return {
        "backend": backend_name,
        **{k: v for k, v in flat_settings(settings).items() if k != "n_threads"},
        "versions": backend_versions(backend_name),
    }


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

    def __init__(self, artifact: Artifact, settings: BackendSettings) -> None:
        self.artifact = artifact
        self.settings = settings
        #: threads for process_prompt / decode_one_by_one (timed sections run alone, so they
        #: may use more cores than evaluation shares); None: settings.n_threads
        self.timing_threads: int | None = None
        #: whether evaluation calls pick their thread count as they run (pytest-xdist with no
        #: thread count configured: quantgate.quiet.evaluation_threads)
        self.shared_cores = False

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
        raise NotImplementedError(f"backend {self.name} does not serve lm-eval")

    @classmethod
    def run_as_deployed(cls, artifact: Artifact, settings: BackendSettings, prompt: str) -> None:
        """Load ``artifact`` as a deployment would and evaluate the first 32 tokens of
        ``prompt`` (quantgate.rss_probe reads the process's peak memory after it)."""
        backend = cls(artifact, settings)
        backend.process_prompt(backend.tokenize(prompt)[:32])

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
        (quantgate.sparsity), or None where the backend cannot read its weights as tensors."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model (GPU memory for GPU backends)."""
