"""A copy of a registry written elsewhere (a test's or a benchmark's edited copy) that still
finds the original's files: ``with_absolute_paths``. Used by the project's tests and by
benchmarks/perturbations.py, never by the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantgate.artifacts.compressions import Compression


def with_absolute_paths(doc: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A parsed registry (plain YAML data) with its relative paths (perplexity texts, task
    folders, and each compression's ``relative_paths`` keys: calibration texts) resolved
    against ``folder``, the original file's folder: a copy written elsewhere, with some entry
    edited, still points at the same files."""
    for evaluation in (doc["evaluation"], *(m.get("evaluation") for m in doc["models"].values())):
        if evaluation:
            evaluation["perplexity"]["text"] = str(folder / evaluation["perplexity"]["text"])
            evaluation["task_paths"] = [str(folder / p) for p in evaluation.get("task_paths", [])]
    for model in doc["models"].values():
        for comp in model["compressions"].values():
            method = Compression.methods.get(comp.get("method", ""))
            for dotted in method.relative_paths if method else ():
                *parents, key = dotted.split(".")
                block = comp
                for parent in parents:
                    block = block.get(parent) or {}
                # a str is a path (a mapping is a Source); an anchored block is one object
                # shared by its aliases: joining an absolute path again leaves it as it is
                if isinstance(block.get(key), str):
                    block[key] = str(folder / block[key])
    return doc
