"""``method: load_quantized`` (format hf): bitsandbytes (LLM.int8, NF4) or optimum-quanto
quantize the weights as transformers loads them: no file of its own, so the footprint gate
measures the loaded weights."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from pydantic import field_validator

from quantgate.artifacts.compressions.base import BuildInput, BuildPair, BuildStore, Compression
from quantgate.configuration.schema_base import did_you_mean

#: libraries whose transformers quantization config the backend builds
#: (quantgate.artifacts.hf_checkpoint.quantization_config)
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

    def build(self, store: BuildStore, pair: BuildPair, src: BuildInput | None) -> BuildInput:
        from quantgate.artifacts.hf_checkpoint import load_quantized_sha256

        assert src is not None
        # the input's checkpoint under the pair's name, told how to quantize it as it loads
        artifact = dataclasses.replace(
            src,  # type: ignore[type-var]  (an Artifact: a dataclass)
            label=pair.id,
            sha256=load_quantized_sha256(src.sha256, self.quantization),
            notes={**src.notes, "quantization": self.quantization},
        )
        return store.remember(artifact)
