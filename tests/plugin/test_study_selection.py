"""Selecting the studies' non-GGUF pairs in a child pytest, offline and without importing vLLM."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from quantgate.configuration.registry import load_registry
from support.helpers import OFFLINE, REPO


def _collect(*args: str) -> tuple[list[str], list[str]]:
    """Collected ids, and which heavy modules the collecting process imported."""
    code = (
        "import sys, pytest\n"
        f"rc = pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', *{list(args)!r}])\n"
        "print('MODULES', [m for m in ('vllm', 'torch', 'transformers') if m in sys.modules])\n"
        "sys.exit(rc)\n"
    )
    env = {**__import__("os").environ, **OFFLINE}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    modules = eval(out.stdout.split("MODULES", 1)[1].strip().splitlines()[0])
    return ids, modules


@pytest.mark.child_pytest  # a collecting child pytest, seconds each
@pytest.mark.parametrize(
    ("family", "benchmarks"),
    [
        ("llama31", {"hellaswag", "agieval_en", "truthfulqa_mc2", "ifeval", "arc_challenge"}),
        ("qwen25", {"hellaswag", "agieval_en", "truthfulqa_mc2", "ifeval"}),
        ("gemma2", {"hellaswag", "agieval_en", "truthfulqa_mc2", "ifeval"}),
        ("llama2", {"mmlu", "bbh"}),
    ],
)
def test_each_study_family_collects_its_benchmark_set_offline(family, benchmarks):
    ids, modules = _collect("-m", "nightly", "--model", family)
    assert modules == []
    per_pair = {}
    for i in ids:
        if m := re.search(r"test_retention\[(.+?)-([a-z0-9_]+)\]$", i):
            per_pair.setdefault(m.group(1), set()).add(m.group(2))
    # the GGUF entry's pairs (llama2 has no GGUF entry: its transformers pairs)
    judged = {p: n for p, n in per_pair.items() if family == "llama2" or p.startswith(f"{family}-")}
    assert judged and all(benchmarks <= names for names in judged.values())
    if family != "llama2":  # Study A's GGUF quant list, the I-quants with their matrix
        study = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q2_K", "IQ4_XS", "IQ2_XXS", "IQ1_S")
        assert {f"{family}-{q}" for q in study} <= set(judged)


#: Study C: the Open LLM Leaderboard v1 and v2 sets, as lm-eval names them
OPENLLM_BENCHMARKS = {
    "arc_challenge": 25,
    "gsm8k": 5,
    "hellaswag": 10,
    "mmlu": 5,
    "truthfulqa_mc2": 0,
    "winogrande": 5,
    "leaderboard_bbh": 3,
    "leaderboard_gpqa": 0,
    "leaderboard_ifeval": None,
    "leaderboard_math_hard": 4,
    "leaderboard_mmlu_pro": 5,
    "leaderboard_musr": 0,
}


@pytest.mark.child_pytest
def test_study_c_collects_the_leaderboard_sets_as_its_own_tier_offline():
    ids, modules = _collect("-m", "openllm", "--model", "openllm")
    assert modules == []
    per_pair: dict[str, set[str]] = {}
    for i in ids:
        if m := re.search(r"test_retention\[(.+?)-([a-z0-9_]+)\]$", i):
            per_pair.setdefault(m.group(1), set()).add(m.group(2))
    models = {p.split("-", 1)[0] for p in per_pair}
    assert models == {
        "openllm_llama31_8b",
        "openllm_llama31_70b",
        "openllm_llama2_7b",
        "openllm_vicuna_7b",
        "openllm_gemma_7b",
    }
    assert all(names == set(OPENLLM_BENCHMARKS) for names in per_pair.values()), per_pair
    every = {"gptq-int4", "gptq-int8", "awq-int4", "w8a8-smoothquant", "fp8"}
    for model in ("openllm_llama31_8b", "openllm_llama2_7b", "openllm_vicuna_7b"):
        assert {p.split("-", 1)[1] for p in per_pair if p.startswith(f"{model}-")} == every
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    for key in models:
        entry = registry.models[key]
        # a weekend's tier: `-m nightly` does not pull it in
        assert entry.backend == "vllm" and "nightly" not in entry.marks
        assert {n: b.num_fewshot for n, b in entry.benchmarks.items()} == OPENLLM_BENCHMARKS
    assert registry.models["openllm_llama2_7b"].benchmarks["gsm8k"].metric == (
        "exact_match,strict-match"
    )


@pytest.mark.parametrize(
    ("mark", "model", "expected"),
    [
        (
            "awq",
            "llama31",
            {"llama31_hf-awq-int4", "llama31_hf-awq-w4a16-llmc"},
        ),
        ("gptq", "qwen25", {"qwen25_hf-gptq-int4"}),
        ("pruned", "gemma2", {"gemma2-pruned8", "gemma2-pruned8-Q4_K_M"}),
        (
            "pruned",
            "llama31",
            {
                "llama31-pruned8",
                "llama31-pruned8-Q4_K_M",
                "llama31_base_hf-minitron-4b-width",
                "llama31_base_hf-minitron-4b-depth",
            },
        ),
        (
            "gguf",
            "qwen25",
            {
                "qwen25-Q8_0",
                "qwen25-Q6_K",
                "qwen25-Q5_K_M",
                "qwen25-Q4_K_M",
                "qwen25-Q2_K",
                "qwen25-IQ4_XS",
                "qwen25-IQ2_XXS",
                "qwen25-IQ1_S",
                "qwen25-pruned8",
                "qwen25-pruned8-Q4_K_M",
            },
        ),
        ("gptq", "llama2", {"llama2_7b_hf-gptq-int4", "llama2_13b_hf-gptq-int4"}),
        (
            "bnb",
            "llama2",
            {
                "llama2_7b_hf-bnb-nf4",
                "llama2_7b_hf-bnb-int8",
                "llama2_13b_hf-bnb-nf4",
                "llama2_13b_hf-bnb-int8",
                "llama2_7b_hf-sparsegpt-50-bnb-int8",
                "llama2_13b_hf-sparsegpt-50-bnb-int8",
            },
        ),
        (
            "sparse",
            "llama2",
            {
                "llama2_7b_hf-sparsegpt-50",
                "llama2_7b_hf-sparsegpt-50-bnb-int8",
                "llama2_13b_hf-sparsegpt-50",
                "llama2_13b_hf-sparsegpt-50-bnb-int8",
            },
        ),
        (
            "bnb",
            "smollm2_hf",
            {"smollm2_hf-bnb-int8", "smollm2_hf-bnb-nf4", "smollm2_hf-llmc-sparsegpt-20-bnb-int8"},
        ),
        ("fp8", "smollm2_hf", {"smollm2_hf-llmc-fp8-dynamic", "smollm2_hf-pruned2-fp8"}),
        ("w8a8", "llama31", {"llama31_hf-w8a8-redhat", "llama31_hf-w8a8-smoothquant"}),
        ("gptq", "llama31", {"llama31_hf-gptq-int4", "llama31_hf-w8a8-smoothquant"}),
        (
            "llm_compressor",
            "smollm2_hf",
            {
                "smollm2_hf-llmc-fp8-dynamic",
                "smollm2_hf-llmc-w4a16-rtn-channel",
                "smollm2_hf-llmc-w4a16-gptq-g64",
                "smollm2_hf-llmc-w8a8-smoothquant",
                "smollm2_hf-pruned2-fp8",
                "smollm2_hf-llmc-sparsegpt-20",
                "smollm2_hf-llmc-wanda-2of4",
            },
        ),
    ],
)
@pytest.mark.child_pytest  # a child process: seconds to a minute
def test_marks_and_families_select_the_study_pairs_offline_without_vllm(mark, model, expected):
    ids, modules = _collect("-m", mark, "--model", model)
    pairs = {i.split("[", 1)[1].rstrip("]") for i in ids if "[" in i}
    # test ids are <pair> or <pair>-<benchmark|pp|tg>: each must start with an expected pair
    assert {
        next(p for p in sorted(expected, key=len, reverse=True) if i.startswith(p)) for i in pairs
    } == expected
    assert "vllm" not in modules and "torch" not in modules
