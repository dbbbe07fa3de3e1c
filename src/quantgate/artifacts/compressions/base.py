"""The keys every compression entry takes, and how an entry finds its method's class."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from quantgate.configuration.constants import GATES, QUALITY_GATES
from quantgate.configuration.schema_base import StrictModel, did_you_mean


# What a method's build step is handed, as the shapes it uses: quantgate.artifacts.store (the store,
# its artifacts) and quantgate.configuration.registry (the pair) import this package, so it names
# neither.
class BuildInput(Protocol):
    """An artifact (quantgate.artifacts.store.Artifact): a build's input, and what it returns."""

    label: str
    path: Path
    sha256: str
    info: Any
    notes: dict[str, Any]


class BuildPair(Protocol):
    """The (model, compression) pair being built (quantgate.configuration.registry.Pair)."""

    @property
    def id(self) -> str: ...
    @property
    def model_key(self) -> str: ...
    @property
    def compression_name(self) -> str: ...


class RegistryView(Protocol):
    """What a build step reads of the registry (quantgate.configuration.registry.Registry)."""

    path: Path
    models: Mapping[str, Any]

    def evaluation_for(self, model_key: str) -> Any: ...


class BuildStore(Protocol):
    """The artifact store (quantgate.artifacts.store.ArtifactStore): checks, caches and
    remembers."""

    registry: RegistryView

    def checked(
        self, label: str, path: Path, notes: dict[str, Any] | None = None
    ) -> BuildInput: ...
    def remember(self, artifact: Any) -> BuildInput: ...
    def calibration(self, relative: str, where: str) -> Path: ...
    def requantized(self, label: str, src: Any, quant_type: str, *args: Any, **kw: Any) -> Path: ...


class Compression(StrictModel):
    """How a variant is produced, and what the gate should think of it.

    One subclass per method, each in its own module of quantgate.artifacts.compressions, declares
    ``method: Literal["<name>"]``, its own keys, the formats it applies to and its build step.
    Validating a mapping as ``Compression`` validates it as the class its ``method`` names.
    """

    method: str
    #: apply this compression to another compression's output (a chain: pruned -> Q4_K_M)
    base: str | None = None
    marks: list[str] = Field(default_factory=list)
    #: ``fail`` marks a canary: the gates in ``expect_fail_on`` must fail (strict xfail).
    expect: Literal["pass", "fail"] = "pass"
    expect_fail_on: list[str] = Field(default_factory=lambda: list(QUALITY_GATES))
    #: gates not run for this pair (reported as skipped, with the registry as the reason)
    skip: list[str] = Field(default_factory=list)
    description: str = ""

    #: the model formats (``format:`` of the entry) the method applies to
    formats: ClassVar[tuple[str, ...]] = ()
    #: the footprint gate measures the loaded weights: the method makes no file of its own
    loaded_weights: ClassVar[bool] = False
    #: every method class, by name (filled as the package's modules are imported)
    methods: ClassVar[dict[str, type[Compression]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        (name,) = typing.get_args(cls.model_fields["method"].annotation)
        Compression.methods[name] = cls

    @model_validator(mode="wrap")
    @classmethod
    def _as_its_method(cls, data: Any, handler: Any) -> Any:
        if cls is not Compression or not isinstance(data, dict):
            return handler(data)
        method = data.get("method")
        if method is None:
            raise ValueError(f"method: required key is missing; one of {', '.join(cls.methods)}")
        if method not in cls.methods:
            raise ValueError(
                f"method: unknown method {method!r}{did_you_mean(str(method), cls.methods)}; "
                f"known: {', '.join(cls.methods)}"
            )
        return cls.methods[method].model_validate(data)

    @field_validator("expect_fail_on", "skip")
    @classmethod
    def _gates_known(cls, v: list[str]) -> list[str]:
        # "retention.<benchmark>" narrows a retention canary to one benchmark (checked against
        # the model's benchmarks in load_registry)
        for gate in (g.split(".", 1)[0] if g.startswith("retention.") else g for g in v):
            if gate not in GATES:
                raise ValueError(
                    f"unknown gate {gate!r}{did_you_mean(gate, GATES)}; valid: {', '.join(GATES)}"
                )
        return v

    def where(self, pair: BuildPair) -> str:
        return f"models.{pair.model_key}.compressions.{pair.compression_name}"

    def build(self, store: BuildStore, pair: BuildPair, src: BuildInput | None) -> BuildInput:
        """The variant: ``src`` is its input (the baseline, or ``base:``'s output; None for a
        method that reads none), ``store`` the artifact store (checks, caches, memo)."""
        raise NotImplementedError(f"method {self.method} has no build step")

    #: whether the build step reads an input (prebuilt does not: its file is the variant)
    takes_input: ClassVar[bool] = True
    #: the entry's keys that hold a path relative to the registry file, dotted for a nested
    #: block ("imatrix.calibration"): a copy of the registry written elsewhere resolves them
    #: (benchmarks/registry_copy.py)
    relative_paths: ClassVar[tuple[str, ...]] = ()

    def provenance(self, variant: BuildInput) -> dict[str, Any]:
        """Where the built ``variant`` came from, beyond its baseline's provenance, for the
        summary rows (prebuilt: the commit its Hub source resolved to). Empty by default."""
        return {}

    def remade_source_warning(self, pair: BuildPair, baseline: BuildInput) -> str | None:
        """A warning when this variant re-creates the weights the baseline was converted from
        and so reads as more lossless than it is (llama_quantize), else None."""
        return None
