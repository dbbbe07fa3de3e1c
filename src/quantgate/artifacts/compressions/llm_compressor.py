"""``method: llm_compressor`` (format hf): llm-compressor's oneshot runs the entry's recipe
(GPTQ, AWQ, SmoothQuant W8A8, FP8, SparseGPT, Wanda) on the input checkpoint, in the quantizer
environment (quantgate.artifacts.llm_compressor_runner; make quantize-env)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from quantgate.artifacts.compressions.base import BuildInput, BuildPair, BuildStore, Compression
from quantgate.configuration.schema_base import did_you_mean

#: llm-compressor modifiers a recipe may name (module paths: quantgate.artifacts.llm_compressor_job)
LLM_COMPRESSOR_MODIFIERS: tuple[str, ...] = (
    "QuantizationModifier",
    "GPTQModifier",
    "AWQModifier",
    "SmoothQuantModifier",
    "SparseGPTModifier",
    "WandaPruningModifier",
)


class LlmCompressor(Compression):
    method: Literal["llm_compressor"]
    #: llm-compressor's oneshot recipe, a list of modifiers, each {modifier: <class name>,
    #: <its arguments>}, e.g. [{modifier: QuantizationModifier, scheme: FP8_DYNAMIC,
    #: targets: Linear, ignore: [lm_head]}]
    recipe: list[dict[str, Any]]
    #: the calibration text, relative to the registry file (not the PPL text)
    calibration: str | None = None
    #: chunks of n_ctx tokens of the calibration text used
    calibration_chunks: int = Field(2, ge=1)

    formats: ClassVar[tuple[str, ...]] = ("hf",)
    relative_paths: ClassVar[tuple[str, ...]] = ("calibration",)

    @model_validator(mode="after")
    def _modifiers_known(self) -> LlmCompressor:
        for i, step in enumerate(self.recipe):
            modifier = step.get("modifier")
            if modifier not in LLM_COMPRESSOR_MODIFIERS:
                raise ValueError(
                    f"recipe[{i}].modifier: {modifier!r} is not one of "
                    f"{', '.join(LLM_COMPRESSOR_MODIFIERS)}"
                    f"{did_you_mean(str(modifier), LLM_COMPRESSOR_MODIFIERS)}"
                )
            # every modifier but round-to-nearest quantization looks at activations
            if modifier != "QuantizationModifier" and self.calibration is None:
                raise ValueError(f"recipe[{i}]: {modifier} needs a calibration text")
        return self

    def build(self, store: BuildStore, pair: BuildPair, src: BuildInput | None) -> BuildInput:
        from quantgate.artifacts import llm_compressor_runner as llm_compressor
        from quantgate.errors import ConfigError

        assert src is not None
        where = self.where(pair)
        if not src.path.is_dir():
            raise ConfigError(f"{where}: llm_compressor needs a transformers checkpoint as input")
        calibration = None
        if self.calibration is not None:
            calibration = store.calibration(self.calibration, where)
        path = llm_compressor.compress(
            pair.id,
            src.path,
            src.sha256,
            self.recipe,
            calibration,
            self.calibration_chunks,
            store.registry.evaluation_for(pair.model_key).perplexity.n_ctx,
            store.registry.models[pair.model_key].backend_settings.seed,
            llm_compressor.quantizer_python(store.registry.path.parent, where),
        )
        return store.checked(pair.id, path, dict(src.notes))
