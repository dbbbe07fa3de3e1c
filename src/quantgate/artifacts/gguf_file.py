"""Checks a GGUF file before llama.cpp sees it, so a bad file is a clear one-line error.

llama.cpp itself only says "failed to load model"; here a wrong magic, a truncated header or
tensor data past the end of the file is named as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantgate.errors import ArtifactError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    file_size: int
    n_params: int
    tensor_bytes: int
    architecture: str
    n_layers: int | None
    #: llama.cpp's name of the file's type (general.file_type: F16, Q4_1, Q4_K_M, ...), if set
    file_type: str | None = None

    @property
    def bits_per_weight(self) -> float:
        """llama.cpp's convention: tensor bytes * 8 / parameter count."""
        return self.tensor_bytes * 8 / self.n_params


def inspect_gguf(path: Path, what: str) -> GGUFInfo:
    """Validate ``path`` and return its size facts.

    Args:
        path: the GGUF file.
        what: who asked, for the message (e.g. ``"smollm2 baseline"``).

    Raises:
        ArtifactError: missing, not GGUF, truncated or unparseable.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise ArtifactError(f"{what}: file not found: {path}") from None
    if magic != GGUF_MAGIC:
        raise ArtifactError(
            f"{what}: {path} is not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r}); "
            "re-download or re-convert it"
        )
    from gguf import GGUFReader  # heavy-ish import, only when a file is checked

    try:
        reader = GGUFReader(path)
    except Exception as exc:  # gguf-py raises bare ValueError/IndexError on short files
        raise ArtifactError(
            f"{what}: {path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
            "delete it and re-create it"
        ) from None
    n_params = 0
    tensor_bytes = 0
    for t in reader.tensors:
        end = t.data_offset + t.n_bytes
        if end > size:
            raise ArtifactError(
                f"{what}: {path} is truncated: tensor {t.name} ends at byte {end} but the file "
                f"has {size}; delete it and re-create it"
            )
        n_params += int(t.n_elements)
        tensor_bytes += int(t.n_bytes)
    if n_params == 0:
        raise ArtifactError(f"{what}: {path} holds no tensors")
    arch_field = reader.get_field("general.architecture")
    arch = arch_field.contents() if arch_field is not None else "unknown"
    layers_field = reader.get_field(f"{arch}.block_count")
    n_layers = int(layers_field.contents()) if layers_field is not None else None
    return GGUFInfo(
        path, size, n_params, tensor_bytes, str(arch), n_layers, _file_type_name(reader)
    )


def _file_type_name(reader: object) -> str | None:
    """general.file_type as llama-quantize names it (LlamaFileType.MOSTLY_Q4_1 -> Q4_1)."""
    from gguf import LlamaFileType

    field = reader.get_field("general.file_type")  # type: ignore[attr-defined]
    if field is None:
        return None
    try:
        name = LlamaFileType(int(field.contents())).name
    except ValueError:
        return None
    return {"ALL_F32": "F32"}.get(name, name.removeprefix("MOSTLY_"))


@dataclass(frozen=True)
class TensorInfo:
    type: str  # ggml type, lower case as llama-quantize reads it
    n_bytes: int


#: bytes of each fixed-size GGUF metadata value type (gguf.GGUFValueType's numbering)
_VALUE_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def read_tensors(path: Path) -> dict[str, TensorInfo]:
    """Every tensor of a GGUF file: its ggml type and its bytes, from the header alone.

    gguf-py's GGUFReader parses every metadata value into numpy views first: about 2 s for a
    49,152-token vocabulary, for each of a diagnosis's dozens of probes, and each recipe's
    pattern check (quantgate.artifacts.tensor_types). This walks past the
    values and reads the tensor table only (the GGUF v2/v3 layout, little-endian)."""
    import mmap
    import struct

    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != GGUF_MAGIC:
            raise ArtifactError(f"{path}: not a GGUF file; re-download or re-convert it")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", m, 4)
        if version < 2:
            raise ArtifactError(f"{path}: GGUF version {version}; re-convert it with llama.cpp")
        pos = 24

        def string() -> str:
            nonlocal pos
            (n,) = struct.unpack_from("<Q", m, pos)
            pos += 8 + n
            return m[pos - n : pos].decode("utf-8", "replace")

        def skip(kind: int) -> None:
            nonlocal pos
            if kind == _STRING:
                string()
            elif kind == _ARRAY:
                item, count = struct.unpack_from("<IQ", m, pos)
                pos += 12
                if item in _VALUE_BYTES:
                    pos += _VALUE_BYTES[item] * count
                else:
                    for _ in range(count):
                        skip(item)
            else:
                pos += _VALUE_BYTES[kind]

        for _ in range(n_kv):
            string()
            (kind,) = struct.unpack_from("<I", m, pos)
            pos += 4
            skip(kind)
        out = {}
        for _ in range(n_tensors):
            name = string()
            (n_dims,) = struct.unpack_from("<I", m, pos)
            dims = struct.unpack_from(f"<{n_dims}Q", m, pos + 4)
            kind, _offset = struct.unpack_from("<IQ", m, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            ggml_type = GGMLQuantizationType(kind)
            block, block_bytes = GGML_QUANT_SIZES[ggml_type]
            n = 1
            for d in dims:
                n *= d
            out[name] = TensorInfo(ggml_type.name.lower(), n // block * block_bytes)
    return out
