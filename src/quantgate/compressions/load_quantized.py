"""``method: load_quantized`` (format hf): bitsandbytes (LLM.int8, NF4) or optimum-quanto
quantize the weights as transformers loads them: no file of its own, so the footprint gate
measures the loaded weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import field_validator

from quantgate.compressions.base import Compression
from quantgate.schema_base import did_you_mean

if TYPE_CHECKING:
    from quantgate.artifacts import Artifact, ArtifactStore
    from quantgate.registry import Pair

#: libraries whose transformers quantization config the backend builds
#: (quantgate.hf_checkpoint.quantization_config)
LOAD_TIME_LIBRARIES: tuple[str, ...] = ("bitsandbytes", "quanto")


class LoadQuantized(Compression):
    method: Literal["load_quantized"]
    #: ``library`` (bitsandbytes, quanto) and that library's transformers config fields, e.g.
    #: {library: bitsandbytes, load_in_4bit: true, bnb_4bit_quant_type: nf4}
    quantization: dict[str, Any]

    formats: ClassVar[tuple[str, ...]] = ("hf",)
    loaded_weights: ClassVar[bool] = True

    @field_validator("quantization")
    @classmethod
    def _library_known(cls, v: dict[str, Any]) -> dict[str, Any]:
        library = v.get("library")
        if library not in LOAD_TIME_LIBRARIES:
            raise ValueError(
                f"library: {library!r} is not one of {', '.join(LOAD_TIME_LIBRARIES)}"
                f"{did_you_mean(str(library), LOAD_TIME_LIBRARIES)}"
            )
        return v

    def build(self, store: ArtifactStore, pair: Pair, src: Artifact | None) -> Artifact:
        from quantgate.artifacts import Artifact
        from quantgate.hf_checkpoint import load_quantized_sha256

        assert src is not None
        artifact = Artifact(
            pair.id,
            src.path,
            load_quantized_sha256(src.sha256, self.quantization),
            src.info,
            {**src.notes, "quantization": self.quantization},
        )
        return store.remember(artifact)
