"""Turning registry entries into checked GGUF files on disk: baselines and their variants.

Everything built is cached under ``$QUANTGATE_CACHE/artifacts``, keyed by the input's sha256,
the target type and the llama.cpp version, so a second run reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantgate.cache import build_once, cache_key, cache_root, sha256_file
from quantgate.gguf_file import GGUFInfo, inspect_gguf
from quantgate.quantize import llama_cpp_version, llama_quantize
from quantgate.registry import Pair, Registry
from quantgate.sources import fetch


@dataclass(frozen=True)
class Artifact:
    label: str
    path: Path
    sha256: str
    info: GGUFInfo


class ArtifactStore:
    """Materializes artifacts once per process (and once per cache, across processes)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._memo: dict[str, Artifact] = {}

    def _checked(self, label: str, path: Path) -> Artifact:
        info = inspect_gguf(path, label)
        artifact = Artifact(label, path, sha256_file(path), info)
        self._memo[label] = artifact
        return artifact

    def _requantized(self, label: str, src: Artifact, quant_type: str) -> Path:
        key = cache_key(input=src.sha256, quant_type=quant_type, llama_cpp=llama_cpp_version())
        target = cache_root() / "artifacts" / key / f"{label}.{quant_type}.gguf"
        return build_once(
            target, lambda partial: llama_quantize(src.path, partial, quant_type, label)
        )

    def baseline(self, model_key: str) -> Artifact:
        label = f"{model_key}-baseline"
        if label in self._memo:
            return self._memo[label]
        entry = self.registry.models[model_key].baseline
        source_path = fetch(entry.source, self.registry, f"models.{model_key}.baseline")
        source = self._checked(f"{model_key}-source", source_path)
        if entry.convert_to is None:
            return self._checked(label, source.path)
        return self._checked(label, self._requantized(label, source, entry.convert_to))

    def variant(self, pair: Pair) -> Artifact:
        if pair.id in self._memo:
            return self._memo[pair.id]
        comp = pair.compression
        if comp.method == "prebuilt":
            assert comp.source is not None
            where = f"models.{pair.model_key}.compressions.{pair.compression_name}"
            return self._checked(pair.id, fetch(comp.source, self.registry, where))
        assert comp.quant_type is not None
        base = self.baseline(pair.model_key)
        return self._checked(pair.id, self._requantized(pair.id, base, comp.quant_type))
