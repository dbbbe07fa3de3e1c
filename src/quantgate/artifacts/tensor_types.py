"""Per-tensor quantization types for llama.cpp's quantizer: a mixed-precision recipe.

What ``llama-quantize --tensor-type PATTERN=TYPE --output-tensor-type TYPE
--token-embedding-type TYPE`` takes, as a registry entry's fields, applied through the same
quantizer the gate uses: in process through ``llama_model_quantize_params`` (``tt_overrides``, a
null-terminated array of pattern/type pairs; ``output_tensor_type``, ``token_embedding_type``),
or as the tool's options where an importance matrix is used (quantgate.artifacts.imatrix).

llama.cpp searches each tensor's name with each pattern (``std::regex_search``, ECMAScript
syntax) in order; the first that matches sets the type, where the tensor's shape allows it
(a K-quant needs rows of a multiple of 256: otherwise llama.cpp falls back to a compatible type,
as it does for the base type). Patterns are checked here with Python's ``re``, which agrees with
ECMAScript on the patterns tensor names need (dots, alternations, classes, anchors).
"""

from __future__ import annotations

import ctypes
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantgate.artifacts.gguf_file import read_tensors
from quantgate.errors import ConfigError

#: what an artifact's notes (and its footprint row) hold of a recipe
RECIPE_NOTES = ("tensor_types", "output_tensor_type", "token_embedding_type")
#: ggml types llama.cpp refuses to quantize a block's weights to without an importance matrix
#: (llama-quant.cpp, tensor_requires_imatrix)
NEEDS_IMATRIX = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS"})
#: the types llama.cpp does not quantize to: with one as the base type it reads no
#: --tensor-type pattern (llama-quant.cpp, llama_tensor_get_type)
UNQUANTIZED_TYPES = frozenset({"F32", "F16", "BF16"})


def ggml_type_id(name: str) -> int:
    """The ggml type called ``name`` (any case, as llama-quantize reads it: q8_0, Q4_K, f16).

    Raises:
        ValueError: no such type (the message lists the known ones).
    """
    from gguf import GGMLQuantizationType

    try:
        return int(GGMLQuantizationType[name.upper()])
    except KeyError:
        known = ", ".join(t.name.lower() for t in GGMLQuantizationType)
        raise ValueError(f"unknown ggml type {name!r} (known: {known})") from None


def ggml_type_name(type_id: int) -> str:
    from gguf import GGMLQuantizationType

    return GGMLQuantizationType(type_id).name.lower()


@dataclass(frozen=True)
class TensorTypes:
    """A recipe's overrides: ``patterns`` in the order llama.cpp tries them."""

    patterns: tuple[tuple[str, str], ...] = ()
    output: str | None = None
    token_embedding: str | None = None

    def __bool__(self) -> bool:
        return bool(self.patterns or self.output or self.token_embedding)

    def key(self) -> dict[str, Any]:
        """What enters the artifact's cache key (nothing where there is no override)."""
        if not self:
            return {}
        return {
            "tensor_types": [list(p) for p in self.patterns],
            "output_tensor_type": self.output,
            "token_embedding_type": self.token_embedding,
        }

    def note(self) -> dict[str, Any]:
        """What the report shows of the recipe."""
        values = (dict(self.patterns) or None, self.output, self.token_embedding)
        return {key: value for key, value in zip(RECIPE_NOTES, values, strict=True) if value}

    def tool_args(self) -> list[str]:
        """llama-quantize's options for the same recipe."""
        args: list[str] = []
        for pattern, type_name in self.patterns:
            args += ["--tensor-type", f"{pattern}={type_name}"]
        if self.output:
            args += ["--output-tensor-type", self.output]
        if self.token_embedding:
            args += ["--token-embedding-type", self.token_embedding]
        return args

    def apply(self, params: Any) -> list[Any]:
        """Set ``params`` (a ``llama_model_quantize_params``); returns what must stay alive
        until llama_model_quantize returns (the array and its strings)."""
        import llama_cpp

        if self.output:
            params.output_tensor_type = ggml_type_id(self.output)
        if self.token_embedding:
            params.token_embedding_type = ggml_type_id(self.token_embedding)
        if not self.patterns:
            return []
        array = (llama_cpp.llama_model_tensor_override * (len(self.patterns) + 1))()
        patterns = [p.encode() for p, _ in self.patterns]
        for slot, raw, (_, type_name) in zip(array, patterns, self.patterns, strict=False):
            slot.pattern, slot.type = raw, ggml_type_id(type_name)
        array[len(self.patterns)].pattern = None  # the terminator llama.cpp stops at
        params.tt_overrides = ctypes.cast(
            array, ctypes.POINTER(llama_cpp.llama_model_tensor_override)
        )
        return [array, patterns]


#: the recipe of an entry that has none (the quantizers' default)
NO_OVERRIDES = TensorTypes()


def check_pattern(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(
            f"tensor_types pattern {pattern!r} is not a regular expression: {exc}"
        ) from None
    return pattern


def check_matches(types: TensorTypes, gguf_path: Path, label: str, where: str) -> None:
    """Every pattern matches a tensor of the file it will quantize.

    Raises:
        ConfigError: one line: the entry's key, the pattern, and the tensors it could have meant.
    """
    names = list(read_tensors(gguf_path))
    for pattern, _ in types.patterns:
        if not any(re.search(pattern, name) for name in names):
            close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"{where}.tensor_types: {pattern!r} matches no tensor of {label} "
                f"({len(names)} tensors, named like {names[min(1, len(names) - 1)]}){hint}"
            )
