"""Cached results are never served stale by a code change. Their cache keys carry the inputs,
the settings and the libraries' versions (llama.cpp, lm-eval, transformers, vLLM, the quantizer
environment's), which covers everything outside this repository; for quantgate's own code,
each kind of cached result carries a version constant, and this test fails when the code
behind a kind changes while its constant stays: bump it where results can change (old entries
are then never read), or, where the golden smoke run shows none did (a refactor), record the
new code with ``QUANTGATE_UPDATE_CACHED_CODE=1 pytest tests/unit/test_cached_code.py``.

Why a test rather than hashing the code into every key: a key over the code would throw away
every cached result (hours of a night's scoring) at each refactor that changes no number, and a
key over only "the right" modules is this same catalogue, unchecked. The code is compared as
Python tokens without comments and docstrings: rewording a comment is no change."""

from __future__ import annotations

import ast
import hashlib
import importlib
import io
import json
import os
import tokenize
from pathlib import Path

import pytest

from support.helpers import REPO

SOURCE = REPO / "src" / "quantgate"
RECORD = Path(__file__).with_name("cached_code.json")

#: each kind of cached result: the constant its cache key carries, and the modules whose code
#: computes it (the scoring backends serve both kinds of score)
BACKENDS = [
    "backends/base.py",
    "backends/child.py",
    "backends/llama_cpp.py",
    "backends/sequence_tree.py",
    "backends/transformers.py",
]
CACHED = {
    "quality: PPL, KLD, the baseline's top-k log-probs (results/quality, baselines/)": (
        "quantgate.evaluation.quality:METHOD_VERSION",
        ["evaluation/quality.py", "evaluation/perplexity.py", "evaluation/kld_top_k.py", *BACKENDS],
    ),
    "benchmarks: lm-eval scores and per-item records (results/benchmarks)": (
        "quantgate.evaluation.retention:METHOD_VERSION",
        [
            "evaluation/retention.py",
            "configuration/tasks.py",
            "configuration/subsets.py",
            "backends/llama_cpp_lm.py",
            "backends/vllm.py",
            *BACKENDS,
        ],
    ),
    "inspected GGUF facts (inspected/)": (
        "quantgate.artifacts.store:_INSPECT_VERSION",
        ["artifacts/gguf_file.py"],
    ),
    "llm-compressor checkpoints (artifacts/)": (
        "quantgate.artifacts.llm_compressor_runner:JOB_VERSION",
        ["artifacts/llm_compressor_runner.py", "artifacts/llm_compressor_job.py"],
    ),
    "pruned models and their block scores (artifacts/)": (
        "quantgate.artifacts.compressions.prune_blocks:PRUNE_VERSION",
        ["artifacts/block_pruning.py", "artifacts/compressions/prune_blocks.py"],
    ),
}


def code_tokens(text: str) -> str:
    """The module's Python tokens, comments, docstrings and layout left out (joined as written:
    Python 3.12's split f-string tokens join to the same text as 3.11's one)."""
    docstrings = {
        (node.body[0].lineno, node.body[0].col_offset)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
    }
    return "".join(
        token.string
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type not in LAYOUT
        and not (token.type == tokenize.STRING and token.start in docstrings)
    )


LAYOUT = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}


def code_digests(modules: list[str]) -> dict[str, str]:
    """Each module's sha256 over its code_tokens."""
    return {
        module: hashlib.sha256(code_tokens((SOURCE / module).read_text()).encode()).hexdigest()
        for module in sorted(modules)
    }


def current() -> dict[str, dict[str, object]]:
    now = {}
    for kind, (constant, modules) in CACHED.items():
        module, name = constant.split(":")
        now[kind] = {
            "constant": constant,
            "version": getattr(importlib.import_module(module), name),
            "code": code_digests(modules),
        }
    return now


def test_the_code_behind_a_cached_result_changes_only_with_its_version():
    now = current()
    if os.environ.get("QUANTGATE_UPDATE_CACHED_CODE") == "1":
        RECORD.write_text(json.dumps(now, indent=2, ensure_ascii=False) + "\n")
        pytest.fail(f"recorded {RECORD.name}: review its diff, and run again without the variable")
    recorded = json.loads(RECORD.read_text())
    stale = []
    for kind, entry in now.items():
        was = recorded.get(kind)
        if was is None or set(was["code"]) != set(entry["code"]):
            stale.append(f"{kind}: its modules are not recorded as they are now")
            continue
        changed = [m for m, digest in entry["code"].items() if was["code"][m] != digest]
        if changed and was["version"] == entry["version"]:
            stale.append(
                f"{kind}: the code of {', '.join(changed)} changed and {entry['constant']} is "
                f"still {entry['version']}: bump it if a result can change; if the golden "
                "smoke run shows none did, record the new code"
            )
        elif was["version"] != entry["version"]:
            stale.append(f"{kind}: {entry['constant']} is {entry['version']}: record it")
    again = "QUANTGATE_UPDATE_CACHED_CODE=1 pytest tests/unit/test_cached_code.py"
    assert not stale, "\n".join(stale) + f"\n(to record: {again})"


def test_a_code_change_is_seen_and_a_reworded_comment_or_docstring_is_not():
    text = (SOURCE / "evaluation" / "perplexity.py").read_text()
    body = text.split('"""', 2)[2]  # the module less its docstring
    reworded = '"""Another docstring."""\n# a new comment\n' + body.replace(
        "\n    return", "\n    # why it returns\n\n    return", 1
    )
    assert "np.log" in text and "\n    return" in body
    changed = text.replace("np.log", "np.log1p", 1)
    assert code_tokens(reworded) == code_tokens(text)
    assert code_tokens(changed) != code_tokens(text)
