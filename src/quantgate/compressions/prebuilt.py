"""``method: prebuilt``: a variant someone else made (a GGUF from the Hub, an AWQ, GPTQ, VPTQ or
FP8 checkpoint), fetched and checked like a model file."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import model_validator

from quantgate.compressions.base import Compression
from quantgate.source_schema import Source

if TYPE_CHECKING:
    from quantgate.artifacts import Artifact, ArtifactStore
    from quantgate.registry import Pair


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

    def build(self, store: ArtifactStore, pair: Pair, src: Artifact | None) -> Artifact:
        from quantgate.sources import fetch

        return store.checked(pair.id, fetch(self.source, store.registry, self.where(pair)))
