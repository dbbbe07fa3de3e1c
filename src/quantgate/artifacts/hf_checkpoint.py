"""transformers checkpoints as artifacts: a folder of config, tokenizer and safetensors files.

A checkpoint's identity (``sha256``) is the hash of its files' hashes, so the caches keyed on
it behave as for a GGUF file. A load-time quantization (bitsandbytes, quanto) has no file of its
own: its identity is the checkpoint's plus the quantization config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from quantgate import progress
from quantgate.artifacts.cache import build_once, cache_key, cache_root, sha256_file
from quantgate.artifacts.gguf_file import GGUFInfo
from quantgate.errors import ArtifactError, ConfigError

_WEIGHTS = ("*.safetensors",)


def checkpoint_sha256(folder: Path) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".sha256"))
    if not files:
        raise ArtifactError(f"{folder} holds no files; not a transformers checkpoint")
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(folder)}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def inspect_checkpoint(folder: Path, what: str) -> GGUFInfo:
    """Size facts of a checkpoint from its safetensors headers (no weights loaded).

    Raises:
        ArtifactError: no config.json, no safetensors files, or a corrupt header.
    """
    if not (folder / "config.json").is_file():
        raise ArtifactError(f"{what}: {folder} has no config.json; not a transformers checkpoint")
    files = sorted(p for pattern in _WEIGHTS for p in folder.glob(pattern))
    if not files:
        raise ArtifactError(f"{what}: {folder} has no *.safetensors weights")
    n_params = tensor_bytes = 0
    for f in files:
        try:
            with f.open("rb") as fh:
                header_len = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(header_len))
        except (OSError, ValueError) as exc:
            raise ArtifactError(
                f"{what}: {f} is corrupt ({exc}); delete it and re-create it"
            ) from None
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in meta["shape"]:
                count *= dim
            n_params += count
            begin, end = meta["data_offsets"]
            tensor_bytes += end - begin
    config = json.loads((folder / "config.json").read_text())
    # the weights only: a repo's other files (tokenizer, a consolidated original/*.pth copy)
    # are not what a compression shrinks
    size = sum(f.stat().st_size for f in files)
    return GGUFInfo(
        folder,
        size,
        n_params,
        tensor_bytes,
        str(config.get("model_type", "unknown")),
        config.get("num_hidden_layers"),
    )


def from_gguf(gguf_path: Path, gguf_sha256: str, label: str) -> Path:
    """A float32 transformers checkpoint made from a GGUF file (transformers' own GGUF loader,
    then ``save_pretrained``), cached by the GGUF's sha256 and the transformers version."""
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ConfigError(
            f"{label}: a transformers checkpoint needs torch and transformers ({exc.name} "
            "missing): pip install -e '.[dev]'"
        ) from None
    key = cache_key(input=gguf_sha256, transformers=transformers.__version__, kind="gguf->hf")
    target = cache_root() / "artifacts" / key / label

    def build(partial: Path) -> None:
        kw = {"gguf_file": gguf_path.name, "trust_remote_code": False}
        with progress.step(f"{label}: transformers checkpoint from {gguf_path.name}"):
            tok = AutoTokenizer.from_pretrained(gguf_path.parent, **kw)
            model = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, dtype=torch.float32, **kw
            )
            # transformers marks a GGUF-loaded model "quantized with gguf" although its weights
            # are dequantized float32 tensors, and refuses to save it: drop that marker
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            partial.mkdir(parents=True)
            model.save_pretrained(partial)
            tok.save_pretrained(partial)

    return build_once(target, build)


def quantization_config(spec: dict[str, Any], where: str) -> Any:
    """The transformers config object for a ``load_quantized`` entry.

    Raises:
        ConfigError: a library that is not installed, or fields its config rejects.
    """
    fields = {k: v for k, v in spec.items() if k != "library"}
    library = spec["library"]
    try:
        if library == "bitsandbytes":
            import bitsandbytes  # noqa: F401  (transformers imports it late, with a vaguer error)
            from transformers import BitsAndBytesConfig as Config
        else:
            import optimum.quanto  # noqa: F401
            from transformers import QuantoConfig as Config
    except ImportError as exc:
        raise ConfigError(
            f"{where}: quantization.library {library} is not installed ({exc.name}); "
            "pip install -e '.[dev]'"
        ) from None
    try:
        return Config(**fields)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: quantization: {exc}") from None


def load_quantized_sha256(base_sha256: str, spec: dict[str, Any]) -> str:
    return hashlib.sha256((base_sha256 + json.dumps(spec, sort_keys=True)).encode()).hexdigest()
