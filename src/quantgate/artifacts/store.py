"""Turning registry entries into checked GGUF files on disk: baselines and their variants.

Everything built is cached under ``$QUANTGATE_CACHE/artifacts``, keyed by the input's sha256,
the target type and the llama.cpp version, so a second run reuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantgate.artifacts.cache import (
    build_once,
    cache_key,
    cache_root,
    read_json,
    sha256_file,
    write_json_atomic,
)
from quantgate.artifacts.gguf_file import GGUFInfo, inspect_gguf
from quantgate.artifacts.hf_checkpoint import (
    checkpoint_sha256,
    from_gguf,
    inspect_checkpoint,
)
from quantgate.artifacts.imatrix import quantize_with_imatrix
from quantgate.artifacts.llama_quantizer import llama_cpp_version, llama_quantize
from quantgate.artifacts.sources import fetch, gguf_shards, hub_commit
from quantgate.artifacts.tensor_types import NO_OVERRIDES, UNQUANTIZED_TYPES, TensorTypes
from quantgate.configuration.registry import Pair, Registry
from quantgate.configuration.schema_base import did_you_mean
from quantgate.errors import ConfigError


@dataclass(frozen=True)
class Artifact:
    label: str
    path: Path
    sha256: str
    info: GGUFInfo
    #: how it was made, where that matters to a reader (pruning: the blocks and their scores)
    notes: dict[str, Any] = field(default_factory=dict)


class ArtifactStore:
    """Materializes artifacts once per process (and once per cache, across processes)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._memo: dict[str, Artifact] = {}

    def checked(self, label: str, path: Path, notes: dict[str, Any] | None = None) -> Artifact:
        """The artifact at ``path``, inspected (a GGUF file or a checkpoint) and remembered."""
        if path.is_dir():  # a transformers checkpoint
            info, sha = inspect_checkpoint(path, label), checkpoint_sha256(path)
        else:
            info, sha = inspect_split_gguf(path, label)
        notes = dict(notes or {})
        if (commit := hub_commit(path)) is not None:
            notes.setdefault("hub_commit", commit)
        return self.remember(Artifact(label, path, sha, info, notes))

    def remember(self, artifact: Artifact) -> Artifact:
        """Keep ``artifact`` for its label: asked again, it is not rebuilt or re-inspected."""
        self._memo[artifact.label] = artifact
        return artifact

    def requantized(
        self,
        label: str,
        src: Artifact,
        quant_type: str,
        imatrix: Path | None = None,
        overrides: TensorTypes = NO_OVERRIDES,
    ) -> Path:
        """``src`` re-typed by llama.cpp's quantizer (with ``imatrix`` and per-tensor
        ``overrides`` where given), cached."""
        key = cache_key(
            input=src.sha256,
            quant_type=quant_type,
            llama_cpp=llama_cpp_version(),
            **({"imatrix": sha256_file(imatrix)} if imatrix is not None else {}),
            **overrides.key(),
        )
        target = cache_root() / "artifacts" / key / f"{label}.{quant_type}.gguf"

        def build(partial: Path) -> None:
            if imatrix is None:
                llama_quantize(src.path, partial, quant_type, label, overrides=overrides)
            else:
                quantize_with_imatrix(src.path, partial, quant_type, imatrix, label, overrides)

        return build_once(target, build)

    def baseline(self, model_key: str) -> Artifact:
        label = f"{model_key}-baseline"
        if label in self._memo:
            return self._memo[label]
        model = self.registry.models[model_key]
        entry = model.baseline
        where = f"models.{model_key}.baseline"
        if entry.source.from_model is not None:
            other = entry.source.from_model
            if other not in self.registry.models or other == model_key:
                raise ConfigError(
                    f"{where}.source.from_model: {other!r} is not another model of "
                    f"{self.registry.path}{did_you_mean(other, self.registry.models)}"
                )
            source = self.baseline(other)
        else:
            fetched = fetch(entry.source, self.registry.path, where)
            source = self.checked(f"{model_key}-source", fetched)
        # where the baseline's weights came from (a from_model baseline inherits its chain)
        upstream = source.notes.get("provenance") or {}
        provenance = {
            "source_type": upstream.get("source_type") or source.info.file_type,
            "source": upstream.get("source") or _describe(entry.source),
        }
        # the commit a `revision: main` resolved to tonight: two nights stay comparable
        if commit := upstream.get("hub_commit") or source.notes.get("hub_commit"):
            provenance["hub_commit"] = commit
        if upstream.get("conversion"):
            provenance["conversion"] = upstream["conversion"]
        if model.format == "hf" and not source.path.is_dir():  # a GGUF made into a checkpoint
            provenance["conversion"] = "; ".join(
                [*filter(None, [upstream.get("conversion")]), "GGUF -> transformers checkpoint"]
            )
            return self.checked(
                label,
                from_gguf(source.path, source.sha256, label),
                {"provenance": provenance},
            )
        if entry.convert_to is None:
            return self.checked(label, source.path, {"provenance": provenance})
        provenance["conversion"] = (
            f"{source.info.file_type or '?'} -> {entry.convert_to} with llama_model_quantize"
            + (" (dequantized: not the original weights)" if _is_quantized(source.info) else "")
        )
        return self.checked(
            label, self.requantized(label, source, entry.convert_to), {"provenance": provenance}
        )

    def variant(self, pair: Pair) -> Artifact:
        """The pair's variant, built by its compression method (quantgate.artifacts.compressions)
        from its input: the baseline, or for a chain (``base:``) that compression's output."""
        if pair.id in self._memo:
            return self._memo[pair.id]
        comp = pair.compression
        src = None
        if comp.takes_input:
            if comp.base is not None:  # a chain: built from another compression's output
                src = self.variant(self.registry.pair(pair.model_key, comp.base))
            else:
                src = self.baseline(pair.model_key)
        return comp.build(self, pair, src)

    def calibration(self, relative: str, where: str) -> Path:
        """A compression's calibration text, resolved next to the registry.

        Raises:
            ConfigError: the file does not exist.
        """
        path = self.registry.resolve(relative)
        if not path.is_file():
            raise ConfigError(f"{where}.calibration: {path} not found")
        return path


def _is_quantized(info: GGUFInfo) -> bool:
    return info.file_type is not None and info.file_type not in UNQUANTIZED_TYPES


#: bump when what inspect_gguf reports changes, so memoized facts are not reused
_INSPECT_VERSION = 1


def _inspected(path: Path, what: str) -> GGUFInfo:
    """inspect_gguf, memoized in the cache by the file's identity (path, size, mtime; a
    truncated or rewritten file is inspected afresh). gguf-py parses every metadata field, a
    49k-token vocabulary included (about 2 s a file on 2 cores), and every pytest process,
    each xdist worker too, inspects the source, baseline and variant of what it runs."""
    try:
        stat = path.stat()
    except OSError:
        return inspect_gguf(path, what)  # its error names the file
    key = cache_key(
        path=str(path.resolve()),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        version=_INSPECT_VERSION,
    )
    memo = cache_root() / "inspected" / f"{key}.json"
    if (saved := read_json(memo)) is not None:
        return GGUFInfo(**{**saved, "path": path})
    info = inspect_gguf(path, what)
    write_json_atomic(memo, {**dataclasses.asdict(info), "path": str(path)})
    return info


def inspect_split_gguf(path: Path, what: str) -> tuple[GGUFInfo, str]:
    """Size facts and identity of a GGUF file, or of every shard of a split one (``path`` its
    first shard): sizes and parameters summed, the sha256 over all shards in order."""
    shards = gguf_shards(path)
    if len(shards) == 1:
        return _inspected(path, what), sha256_file(path)
    infos = [
        _inspected(p, f"{what} (shard {i + 1} of {len(shards)})") for i, p in enumerate(shards)
    ]
    digest = hashlib.sha256()
    for shard in shards:
        digest.update(f"{shard.name}\0{sha256_file(shard)}\n".encode())
    first = infos[0]
    total = dataclasses.replace(
        first,
        file_size=sum(i.file_size for i in infos),
        n_params=sum(i.n_params for i in infos),
        tensor_bytes=sum(i.tensor_bytes for i in infos),
    )
    return total, digest.hexdigest()


def _describe(source: Any) -> str:
    """Where a baseline's source came from, in a few words for the report."""
    if source.pypi_wheel is not None:
        w = source.pypi_wheel
        return f"PyPI {w.package}=={w.version}: {w.member}"
    if source.hf is not None:
        return f"Hub {source.hf.repo}@{source.hf.revision}" + (
            f": {source.hf.file}" if getattr(source.hf, "file", None) else ""
        )
    if source.path is not None:
        return f"file {source.path}"
    return f"model {source.from_model}"
