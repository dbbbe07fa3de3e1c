"""The footprint gate's measurer: the variant's size against its baseline's (file bytes, or the
loaded weights' for a load-time quantization), peak memory loaded alone
(quantgate.backends.rss_probe, or the engine's own processes for a backend that has them), load time
and weight sparsity."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from quantgate.artifacts.store import Artifact
from quantgate.artifacts.tensor_types import RECIPE_NOTES
from quantgate.backends import backend_class
from quantgate.backends.rss_probe import peak_memory
from quantgate.configuration.registry import Pair
from quantgate.evaluation.loading import Loading
from quantgate.verdicts import measurement
from quantgate.verdicts.measurement import Measurement


class FootprintMeasurer:
    def __init__(self, loading: Loading) -> None:
        self.loading = loading
        self._baseline_memory: dict[str, dict[str, float | None]] = {}

    def probe_memory(self, artifact: Artifact, model_key: str) -> dict[str, float | None]:
        """Peak memory of ``artifact`` loaded alone in a fresh process
        (quantgate.backends.rss_probe). A backend whose model lives in processes of its own (vLLM's
        engine) measured them as it loaded (Backend.deployed_memory): the session's engine is that
        fresh process, and a probe would start a second engine (on a GPU, beside the first: no
        memory left)."""
        loading = self.loading
        backend = loading.registry.models[model_key].backend
        if backend_class(backend).one_per_process:
            if artifact.label not in loading.pool.deployed_memory:
                loading.backend(artifact, model_key)
            if (measured := loading.pool.deployed_memory.get(artifact.label)) is not None:
                return measured
            loading.pool.close()  # an engine inside this process: probe it alone
        return peak_memory(artifact, loading.settings(model_key), backend)

    def baseline_memory(self, model_key: str) -> dict[str, float | None]:
        if model_key not in self._baseline_memory:
            self._baseline_memory[model_key] = self.probe_memory(
                self.loading.artifacts.baseline(model_key), model_key
            )
        return self._baseline_memory[model_key]

    def facts(self, pair: Pair) -> dict[str, Any]:
        """Size facts of the variant and its baseline: file bytes, or for a load-time
        quantization (no file of its own) the loaded weights' bytes of both."""
        loading = self.loading
        variant = loading.artifacts.variant(pair)
        baseline = loading.artifacts.baseline(pair.model_key)
        if pair.compression.loaded_weights:  # the method makes no file (load-time quantization)
            size = loading.variant_backend(pair).memory_bytes()
            base_size = loading.baseline_backend(pair.model_key).memory_bytes()
            assert size is not None and base_size is not None
            measure = "loaded weights"
        else:
            size, base_size, measure = variant.info.file_size, baseline.info.file_size, "file"
        return {
            "file_size_bytes": size,
            "baseline_file_size_bytes": base_size,
            "size_measured_as": measure,
            "bits_per_weight": size * 8 / variant.info.n_params
            if measure != "file"
            else variant.info.bits_per_weight,
            "baseline_bits_per_weight": baseline.info.bits_per_weight,
            "n_blocks": variant.info.n_layers,
            "pruned_blocks": variant.notes.get("pruned_blocks"),
            "imatrix": variant.notes.get("imatrix"),
            # a mixed-precision recipe's per-tensor types, where the entry has them
            **{k: variant.notes[k] for k in RECIPE_NOTES if k in variant.notes},
            **self.probe_memory(variant, pair.model_key),
            **{f"baseline_{k}": v for k, v in self.baseline_memory(pair.model_key).items()},
            "load_seconds": self._load_time(pair),
            "sparsity": loading.variant_backend(pair).weight_sparsity(),
        }

    def measure(self, pair: Pair) -> Measurement:
        m = measurement.footprint(self.facts(pair))
        return replace(m, provenance=self.loading.provenance(pair))

    def _load_time(self, pair: Pair) -> float:
        label = self.loading.artifacts.variant(pair).label
        if label not in self.loading.pool.load_seconds:
            self.loading.variant_backend(pair)
        return self.loading.pool.load_seconds[label]
