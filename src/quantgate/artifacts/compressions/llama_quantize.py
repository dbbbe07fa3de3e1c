"""``method: llama_quantize``: llama.cpp's quantizer re-types the input GGUF (``quant_type``),
with an importance matrix (``imatrix:``) where the type needs or the entry asks for one, and
per-tensor types (``tensor_types:``, ``output_tensor_type:``, ``token_embedding_type:``) for a
mixed-precision recipe (quantgate.artifacts.tensor_types)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from quantgate.artifacts.compressions.base import BuildInput, BuildPair, BuildStore, Compression
from quantgate.artifacts.tensor_types import (
    NEEDS_IMATRIX,
    UNQUANTIZED_TYPES,
    TensorTypes,
    check_matches,
    check_pattern,
    ggml_type_id,
)
from quantgate.configuration.constants import LLAMA_QUANT_TYPES
from quantgate.configuration.schema_base import StrictModel
from quantgate.configuration.source_schema import Source, check_quant_type


class Imatrix(StrictModel):
    """llama.cpp's importance matrix for a llama_quantize variant: llama-imatrix over
    ``chunks`` chunks of ``n_ctx`` tokens of ``calibration`` (not the PPL text), computed on
    the variant's input and cached (see quantgate.artifacts.imatrix)."""

    #: a path relative to the registry file, or a source (e.g. a member of a Hub archive)
    calibration: str | Source
    chunks: int = Field(8, ge=1)
    n_ctx: int = Field(512, ge=16)


class LlamaQuantize(Compression):
    method: Literal["llama_quantize"]
    quant_type: str
    #: quantize with an importance matrix (the low-bit I-quants need one)
    imatrix: Imatrix | None = None
    #: llama-quantize's --tensor-type PATTERN=TYPE, in order: the first pattern a tensor's name
    #: matches (a regular expression, searched) sets its ggml type (q8_0, q4_k, f16, ...)
    tensor_types: dict[str, str] = Field(default_factory=dict)
    #: llama-quantize's --output-tensor-type and --token-embedding-type
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None

    formats: ClassVar[tuple[str, ...]] = ("gguf",)
    relative_paths: ClassVar[tuple[str, ...]] = ("imatrix.calibration",)

    @field_validator("quant_type")
    @classmethod
    def _quant_type_known(cls, v: str) -> str:
        return check_quant_type(v)

    @field_validator("tensor_types")
    @classmethod
    def _overrides_known(cls, v: dict[str, str]) -> dict[str, str]:
        return {check_pattern(p): _ggml_type(t) for p, t in v.items()}

    @field_validator("output_tensor_type", "token_embedding_type")
    @classmethod
    def _type_known(cls, v: str | None) -> str | None:
        return None if v is None else _ggml_type(v)

    @model_validator(mode="after")
    def _matrix_where_needed(self) -> LlamaQuantize:
        if self.imatrix is None and LLAMA_QUANT_TYPES[self.quant_type].needs_imatrix:
            raise ValueError(
                f"{self.quant_type} needs an importance matrix: add an imatrix: block "
                "(calibration: <text>, chunks: <n>), or choose a type that does not"
            )
        overrides = [
            *self.tensor_types.values(),
            self.output_tensor_type,
            self.token_embedding_type,
        ]
        if self.tensor_types and self.quant_type in UNQUANTIZED_TYPES:
            # llama-quant.cpp (llama_tensor_get_type) reads the patterns only when the base
            # type is quantized: on F16 they would be ignored, without a word
            raise ValueError(
                f"tensor_types on quant_type {self.quant_type}: llama.cpp applies them only "
                "with a quantized quant_type; choose one (Q8_0 keeps every block's rows) and "
                "name the tensors to keep unquantized with f16"
            )
        needy = sorted({t for t in overrides if t and t.upper() in NEEDS_IMATRIX})
        if self.imatrix is None and needy:
            raise ValueError(
                f"{', '.join(needy)} needs an importance matrix: add an imatrix: block "
                "(calibration: <text>, chunks: <n>), or override with a type that does not"
            )
        return self

    @property
    def overrides(self) -> TensorTypes:
        return TensorTypes(
            tuple(self.tensor_types.items()), self.output_tensor_type, self.token_embedding_type
        )

    def build(self, store: BuildStore, pair: BuildPair, src: BuildInput | None) -> BuildInput:
        assert src is not None
        overrides = self.overrides
        if overrides:  # before any work: a pattern that names nothing is a typo
            check_matches(overrides, src.path, src.label, self.where(pair))
        notes = {**src.notes, **overrides.note()}
        if self.imatrix is None:
            path = store.requantized(pair.id, src, self.quant_type, overrides=overrides)
            return store.checked(pair.id, path, notes)
        matrix, note = self._imatrix(store, pair, src)
        path = store.requantized(pair.id, src, self.quant_type, matrix, overrides)
        return store.checked(pair.id, path, {**notes, "imatrix": note})

    def remade_source_warning(self, pair: BuildPair, baseline: BuildInput) -> str | None:
        """Warns when the variant has the type its baseline was dequantized from: it re-creates
        nearly the source's weights, so it looks more lossless than a variant of higher
        precision would (seen on a model shipped as Q4_K_M: its re-made Q4_K_M lost less PPL
        than its Q8_0). A chained variant (``base:``) starts from other weights: no warning."""
        prov = baseline.notes.get("provenance") or {}
        source_type = prov.get("source_type")
        if self.base is not None or source_type is None:
            return None
        if self.quant_type != source_type or source_type in UNQUANTIZED_TYPES:
            return None
        return (
            f"{pair.id}: {self.quant_type} is the type the baseline was converted from "
            f"({prov.get('conversion', source_type)}): it re-creates nearly the source's weights "
            "and reads as more lossless than it is; compare against the original weights to "
            "judge it"
        )

    def _imatrix(
        self, store: BuildStore, pair: BuildPair, src: BuildInput
    ) -> tuple[Path, dict[str, Any]]:
        """llama-imatrix of ``src`` (the variant's input) over the entry's calibration text,
        cached by the input, the text and the settings."""
        from quantgate import llama_placement
        from quantgate.artifacts.cache import build_once, cache_key, cache_root
        from quantgate.artifacts.imatrix import compute_imatrix
        from quantgate.artifacts.llama_quantizer import llama_cpp_version
        from quantgate.artifacts.sources import fetch

        settings = self.imatrix
        assert settings is not None
        where = f"{self.where(pair)}.imatrix"
        if isinstance(settings.calibration, str):
            calibration = store.calibration(settings.calibration, where)
        else:  # a source: fetched (and checked) like a model file
            calibration = fetch(settings.calibration, store.registry.path, f"{where}.calibration")
        text_sha = hashlib.sha256(calibration.read_bytes()).hexdigest()
        # the tool's sums follow where its weights go (no key where that is llama.cpp's own)
        placement = llama_placement.current(allow_amx=False)
        key = cache_key(
            input=src.sha256,
            calibration=text_sha,
            chunks=settings.chunks,
            n_ctx=settings.n_ctx,
            llama_cpp=llama_cpp_version(),
            **({"placement": placement} if placement != "default" else {}),
        )
        target = cache_root() / "imatrix" / key / f"{src.label}.imatrix.gguf"
        build_once(
            target,
            lambda partial: compute_imatrix(
                src.path, calibration, partial, settings.chunks, settings.n_ctx, pair.id
            ),
        )
        note = {
            "calibration": calibration.name,
            "calibration_sha256": text_sha,
            "chunks": settings.chunks,
            "n_ctx": settings.n_ctx,
        }
        return target, note


def _ggml_type(name: str) -> str:
    ggml_type_id(name)  # raises ValueError, which names the known types
    return name.lower()
