"""``method: prune_blocks``: structured pruning, ShortGPT-style: the ``n_blocks`` transformer
blocks with the lowest block influence on a calibration text are removed
(quantgate.artifacts.block_pruning), from a GGUF file or a transformers checkpoint."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from quantgate.artifacts.compressions.base import BuildInput, BuildPair, BuildStore, Compression

#: Bump when pruning's choice or file rewriting changes, so old artifacts are not reused.
PRUNE_VERSION = 1


class PruneBlocks(Compression):
    method: Literal["prune_blocks"]
    #: how many transformer blocks to remove, chosen by block influence
    n_blocks: int = Field(ge=1)
    #: the calibration text, relative to the registry file (not the PPL text)
    calibration: str
    #: chunks of n_ctx tokens of the calibration text used
    calibration_chunks: int = Field(2, ge=1)
    #: blocks never removed; default the first and the last
    protect: list[int] | None = None

    formats: ClassVar[tuple[str, ...]] = ("gguf", "hf")
    relative_paths: ClassVar[tuple[str, ...]] = ("calibration",)

    def build(self, store: BuildStore, pair: BuildPair, src: BuildInput | None) -> BuildInput:
        """Drop the least influential blocks of ``src``; the chosen blocks and every block's
        score are logged and kept beside the file."""
        from quantgate import progress
        from quantgate.artifacts import block_pruning as prune
        from quantgate.artifacts.cache import (
            build_once,
            cache_key,
            cache_root,
            read_json,
            write_json_atomic,
        )
        from quantgate.errors import ConfigError

        assert src is not None
        where = self.where(pair)
        calib_path = store.calibration(self.calibration, where)
        text = calib_path.read_text(encoding="utf-8")
        n_ctx = store.registry.evaluation_for(pair.model_key).perplexity.n_ctx
        checkpoint = src.path.is_dir()  # a transformers checkpoint, else a GGUF file
        # a checkpoint is rewritten by transformers' save_pretrained: its version shapes the files
        writer = {"writer": f"transformers {_transformers_version()}"} if checkpoint else {}
        key = cache_key(
            input=src.sha256,
            method="prune_blocks/block_influence",
            n_blocks=self.n_blocks,
            calibration=hashlib.sha256(text.encode()).hexdigest(),
            chunks=self.calibration_chunks,
            n_ctx=n_ctx,
            protect=self.protect,
            version=PRUNE_VERSION,
            **writer,
        )
        target = cache_root() / "artifacts" / key / (pair.id if checkpoint else f"{pair.id}.gguf")
        notes_path = target.with_name(f"{pair.id}.prune.json")

        def build(partial: Path) -> None:
            with progress.step(f"{pair.id}: block influence on {calib_path.name}"):
                states = prune.hidden_states_on(src.path, text, n_ctx, self.calibration_chunks)
                scores = prune.block_influence(states)
            protect = self.protect if self.protect is not None else [0, len(scores) - 1]
            try:
                dropped = prune.choose_blocks(scores, self.n_blocks, protect)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            with progress.step(
                f"{pair.id}: write {len(scores) - len(dropped)} of {len(scores)} blocks"
            ):
                drop = prune.drop_blocks_hf if checkpoint else prune.drop_blocks
                drop(src.path, partial, dropped, pair.id)
            write_json_atomic(notes_path, {"block_influence": scores, "dropped": dropped})

        build_once(target, build, companions=(notes_path,))
        notes = read_json(notes_path) or {}
        if notes:
            chosen = prune.BlockScores(notes["block_influence"], notes["dropped"])
            progress.say(f"{pair.id}: {chosen.describe()}")
        return store.checked(
            pair.id, target, {"pruned_blocks": notes.get("dropped"), **dict(src.notes)}
        )


def _transformers_version() -> str:
    from importlib.metadata import version

    return version("transformers")
