"""Structured pruning: remove whole transformer blocks from a GGUF file or a transformers
checkpoint.

Blocks are chosen by ShortGPT's *block influence* (Men et al., 2024): on calibration text, the
importance of block i is BI_i = 1 - mean over tokens of cos(h_i, h_{i+1}), where h_i is the
hidden state entering block i. A block that barely turns its input is the cheapest to drop.
The hidden states come from transformers loading the same GGUF (``gguf_file``), in float32.

Dropping rewrites the file with gguf-py: every tensor of a dropped block is left out, the others
renumbered (``blk.7.*`` -> ``blk.6.*``), ``<arch>.block_count`` lowered and per-block metadata
arrays cut to match, so llama.cpp (and transformers) load the result as a shallower model.
A transformers checkpoint is rewritten by transformers itself: the blocks leave the model's
layer list, the survivors are renumbered (their attention's ``layer_idx`` indexes the KV cache)
and ``num_hidden_layers`` (and ``layer_types``, where the architecture has it) follow.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantgate.errors import ArtifactError, ConfigError

_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class BlockScores:
    """Block influence of every block on the calibration text, and the blocks chosen."""

    scores: list[float]
    dropped: list[int]

    def describe(self) -> str:
        ranked = sorted(range(len(self.scores)), key=lambda i: self.scores[i])
        least = ", ".join(f"{i}: {self.scores[i]:.4f}" for i in ranked[: len(self.dropped) + 3])
        return f"drop blocks {self.dropped} (block influence, lowest first: {least})"


def block_influence(hidden_states: list[np.ndarray]) -> list[float]:
    """BI_i = 1 - mean_t cos(h_i[t], h_{i+1}[t]) for ``hidden_states`` of n_blocks + 1 arrays
    ``[n_tokens, d]`` (the embeddings, then each block's output)."""
    scores = []
    for a, b in itertools.pairwise(hidden_states):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        cos = (a64 * b64).sum(-1) / (np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1))
        scores.append(float(1.0 - np.mean(cos)))
    return scores


def choose_blocks(scores: list[float], n_drop: int, protect: Iterable[int] = ()) -> list[int]:
    """The ``n_drop`` least influential blocks, never a protected one (sorted).

    Raises:
        ConfigError: asking to drop every block, or more than there are.
    """
    keep = set(protect)
    candidates = [i for i in range(len(scores)) if i not in keep]
    if not 0 < n_drop < len(scores) or n_drop > len(candidates):
        raise ConfigError(
            f"cannot drop {n_drop} of {len(scores)} blocks ({len(keep)} protected); "
            "use 1 to n_blocks - 1"
        )
    return sorted(sorted(candidates, key=lambda i: scores[i])[:n_drop])


def _load(path: Path, dtype: str = "float32") -> tuple[object, object]:
    """transformers' model and tokenizer for a GGUF file or a checkpoint folder."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ConfigError(
            f"pruning needs torch and transformers ({exc.name} missing): "
            "pip install -e '.[dev]' (torch==2.13.0 is the CPU build)"
        ) from None
    # never run a repo's modelling code to prune it (a GGUF file carries none)
    kw: dict[str, object] = {"trust_remote_code": False}
    folder = path
    if not path.is_dir():
        kw["gguf_file"], folder = path.name, path.parent
    tok = AutoTokenizer.from_pretrained(folder, **kw)
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=getattr(torch, dtype) if dtype != "auto" else "auto", **kw
    )
    return model.eval(), tok


def hidden_states_on(path: Path, text: str, n_ctx: int, max_chunks: int) -> list[np.ndarray]:
    """Hidden states (embeddings + every block's output) of the model in ``path`` (a GGUF file
    or a transformers checkpoint) over the first ``max_chunks`` chunks of ``n_ctx`` tokens of
    ``text``, concatenated over tokens."""
    model, tok = _load(path)  # first: it turns a missing torch into a one-line error
    import torch

    ids = tok(text, return_tensors="pt").input_ids[0]
    chunks = [ids[i : i + n_ctx] for i in range(0, len(ids) - n_ctx + 1, n_ctx)][:max_chunks]
    if not chunks:
        raise ConfigError(f"calibration text has {len(ids)} tokens, fewer than n_ctx={n_ctx}")
    per_layer: list[list[np.ndarray]] = []
    with torch.no_grad():
        for chunk in chunks:
            out = model(chunk[None, :], output_hidden_states=True)
            # transformers' hidden_states: the embeddings, then each block's output, except that
            # the last entry has the final norm applied: the last block's BI is not comparable
            # with the others (it is protected from pruning by default anyway)
            states = list(out.hidden_states)
            if not per_layer:
                per_layer = [[] for _ in states]
            for i, h in enumerate(states):
                per_layer[i].append(h[0].float().numpy())
    return [np.concatenate(layer) for layer in per_layer]


def _kept_blocks(n_blocks: int, dropped: set[int], label: str) -> list[int]:
    """The blocks left after dropping ``dropped`` of ``n_blocks``, in order.

    Raises:
        ArtifactError: ``dropped`` names a block the model lacks.
    """
    if not dropped <= set(range(n_blocks)):
        raise ArtifactError(f"{label}: blocks {sorted(dropped)} are not all in 0..{n_blocks - 1}")
    return [i for i in range(n_blocks) if i not in dropped]


def drop_blocks(src: Path, dst: Path, drop: Iterable[int], label: str) -> int:
    """Write ``src`` without the blocks in ``drop``; returns the new block count.

    Raises:
        ArtifactError: ``src`` has no block count, or ``drop`` names a block it lacks.
    """
    import gguf

    reader = gguf.GGUFReader(src)
    arch_field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if arch_field is None:
        raise ArtifactError(f"{label}: {src} has no general.architecture")
    arch = str(arch_field.contents())
    count_key = f"{arch}.block_count"
    count_field = reader.get_field(count_key)
    if count_field is None:
        raise ArtifactError(f"{label}: {src} has no {count_key}; cannot prune blocks")
    n_blocks = int(count_field.contents())
    dropped = set(drop)
    kept = _kept_blocks(n_blocks, dropped, label)
    renumber = {old: new for new, old in enumerate(kept)}

    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # the writer adds these itself
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == count_key:
            value = len(kept)
        elif (
            field.name.startswith(f"{arch}.") and isinstance(value, list) and len(value) == n_blocks
        ):
            value = [value[i] for i in kept]  # per-block arrays (head counts of some archs)
        writer.add_key_value(field.name, value, vtype, sub_type=sub_type)

    tensors = []
    for t in reader.tensors:
        m = _BLOCK.match(t.name)
        if m is None:
            tensors.append((t.name, t))
        elif int(m.group(1)) not in dropped:
            tensors.append((f"blk.{renumber[int(m.group(1))]}.{m.group(2)}", t))
    for name, t in tensors:
        writer.add_tensor_info(name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, t in tensors:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    return len(kept)


def drop_blocks_hf(src: Path, dst: Path, drop: Iterable[int], label: str) -> int:
    """Save the checkpoint ``src`` without the blocks in ``drop`` to the folder ``dst``, in the
    checkpoint's own dtype; returns the new block count.

    Raises:
        ArtifactError: the model has no ``model.layers`` list, or ``drop`` names a block it lacks.
    """
    model, tok = _load(src, dtype="auto")
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ArtifactError(f"{label}: {src} has no model.layers list; cannot prune blocks")
    kept = _kept_blocks(len(layers), set(drop), label)
    import torch

    model.model.layers = torch.nn.ModuleList(layers[i] for i in kept)
    for new, layer in enumerate(model.model.layers):
        attention = getattr(layer, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = new  # the KV cache is indexed by it
    config = model.config
    config.num_hidden_layers = len(kept)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in kept]
    dst.mkdir(parents=True)
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return len(kept)
