"""Loading for the measurers: the artifacts a pair needs, each model loaded once per session
(quantgate.backends.pool) with the entry's settings and the session's thread policy, and a lazy
handle that loads only when a cache misses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quantgate.artifacts.store import Artifact, ArtifactStore
from quantgate.backends import Backend
from quantgate.backends.pool import BackendPool
from quantgate.configuration.registry import BackendSettings, Pair, Registry
from quantgate.night.machine import available_cores
from quantgate.quiet import xdist_workers


class LazyBackend:
    """A model the measurers score, loaded on its first use: what the result caches key on
    (``artifact``, ``settings``, ``name``) is known without loading it, so a cache hit never
    loads a model. It offers the scoring calls the evaluators make (quantgate.evaluation.quality,
    quantgate.evaluation.retention); ``loaded()`` is the backend itself."""

    def __init__(
        self, load: Callable[[], Backend], artifact: Artifact, settings: BackendSettings, name: str
    ) -> None:
        self._load = load
        self.artifact = artifact
        self.settings = settings
        self.name = name
        self._backend: Backend | None = None

    def loaded(self) -> Backend:
        if self._backend is None:
            self._backend = self._load()
        return self._backend

    @property
    def n_vocab(self) -> int:
        return self.loaded().n_vocab

    @property
    def bos_token_id(self) -> int | None:
        return self.loaded().bos_token_id

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self.loaded().tokenize(text, add_special)

    def logits(self, tokens: Sequence[int], start: int = 0) -> np.ndarray:
        return self.loaded().logits(tokens, start)

    def lm_eval_model(self) -> Any:
        return self.loaded().lm_eval_model()


class Loading:
    """The artifacts and loaded backends of one session.

    Args:
        registry: the validated models.yaml.
        n_threads: overrides every entry's backend_settings.n_threads when given.
        max_loaded: models kept loaded at once (baseline + the variant under test).
        in_child: load the backends that can in child processes (quantgate.backends.child).
    """

    def __init__(
        self,
        registry: Registry,
        n_threads: int | None = None,
        max_loaded: int = 2,
        in_child: bool = True,
    ) -> None:
        self.registry = registry
        self.n_threads = n_threads
        self.artifacts = ArtifactStore(registry)
        self.pool = BackendPool(max_loaded, in_child)

    def settings(self, model_key: str) -> BackendSettings:
        """The entry's backend settings; ``--threads`` overrides the thread count, and under
        pytest-xdist an unset one is the worker's share of the cores (two workers of two
        threads each on two cores spin against each other; the timed sections, which run
        alone, still use every core: see timing_threads)."""
        settings = self.registry.models[model_key].backend_settings
        if self.n_threads:
            settings = settings.model_copy(update={"n_threads": self.n_threads})
        elif settings.n_threads is None and xdist_workers() > 1:
            share = max(1, available_cores() // xdist_workers())
            settings = settings.model_copy(update={"n_threads": share})
        return settings

    def timing_threads(self, model_key: str) -> int:
        """Threads for timed sections: what a serial run uses (they run alone)."""
        configured = self.n_threads or self.registry.models[model_key].backend_settings.n_threads
        return configured or available_cores()

    def noise_settings(self, model_key: str) -> BackendSettings:
        """The baseline's settings with its arithmetic perturbed (``BackendSettings.perturbed``:
        for llama.cpp the other KV-cache precision and a quarter of the batch size). The same
        weights, so what differs is floating-point noise of the kind another machine's kernels
        bring, somewhat larger."""
        return self.settings(model_key).perturbed()

    def backend(
        self, artifact: Artifact, model_key: str, settings: BackendSettings | None = None
    ) -> Backend:
        """A loaded backend for ``artifact``, reused across tests (``BackendPool``)."""
        entry = self.registry.models[model_key]

        def configure(backend: Backend) -> None:
            backend.timing_threads = self.timing_threads(model_key)
            backend.shared_cores = xdist_workers() > 1 and not (
                self.n_threads or entry.backend_settings.n_threads
            )

        return self.pool.get(
            artifact, settings or self.settings(model_key), entry.backend, configure
        )

    def baseline_backend(self, model_key: str) -> Backend:
        return self.backend(self.artifacts.baseline(model_key), model_key)

    def variant_backend(self, pair: Pair) -> Backend:
        return self.backend(self.artifacts.variant(pair), pair.model_key)

    def lazy(
        self, artifact: Artifact, model_key: str, settings: BackendSettings | None = None
    ) -> LazyBackend:
        """``artifact``'s backend, loaded only when a cache misses."""
        settings = settings or self.settings(model_key)
        return LazyBackend(
            lambda: self.backend(artifact, model_key, settings),
            artifact,
            settings,
            self.registry.models[model_key].backend,
        )

    def lazy_baseline(self, model_key: str) -> LazyBackend:
        return self.lazy(self.artifacts.baseline(model_key), model_key)

    def lazy_variant(self, pair: Pair) -> LazyBackend:
        return self.lazy(self.artifacts.variant(pair), pair.model_key)

    def provenance(self, pair: Pair) -> dict[str, Any]:
        """Where the pair's models came from, for every summary row of its gates: the
        baseline's provenance, a warning where the variant re-creates the baseline's source
        weights, and what the compression method adds (quantgate.artifacts.compressions.base)."""
        baseline = self.artifacts.baseline(pair.model_key)
        return {
            "baseline_provenance": baseline.notes.get("provenance"),
            "source_type_match": pair.compression.remade_source_warning(pair, baseline),
            **pair.compression.provenance(self.artifacts.variant(pair)),
        }

    def close(self) -> None:
        self.pool.close()


def registry_root(registry: Registry, root: Path | None) -> Path:
    """Where relative data paths of local lm-eval tasks start: the pytest rootdir, else the
    registry's folder's parent."""
    return root or registry.path.parent.parent
