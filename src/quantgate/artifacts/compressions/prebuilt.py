"""``method: prebuilt``: a variant someone else made (a GGUF from the Hub, an AWQ, GPTQ, VPTQ or
FP8 checkpoint), fetched and checked like a model file."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import model_validator

from quantgate.artifacts.compressions.base import BuildInput, BuildPair, BuildStore, Compression
from quantgate.configuration.source_schema import Source


class Prebuilt(Compression):
    method: Literal["prebuilt"]
    source: Source

    formats: ClassVar[tuple[str, ...]] = ("gguf", "hf")
    takes_input: ClassVar[bool] = False

    @model_validator(mode="after")
    def _no_chain(self) -> Prebuilt:
        if self.base is not None:
            raise ValueError("method prebuilt takes no base: its source is the variant")
        return self

    def build(self, store: BuildStore, pair: BuildPair, src: BuildInput | None) -> BuildInput:
        from quantgate.artifacts.sources import fetch

        return store.checked(pair.id, fetch(self.source, store.registry.path, self.where(pair)))

    def provenance(self, variant: BuildInput) -> dict[str, Any]:
        commit = variant.notes.get("hub_commit")
        return {"variant_hub_commit": commit} if commit else {}
