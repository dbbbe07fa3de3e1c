"""The transformers backend, load-time quantization families on CPU, the vLLM argument builder,
and selecting the study's non-GGUF pairs offline without importing vLLM."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quantgate.artifacts import Artifact
from quantgate.backend_settings import LlamaCppSettings, TransformersSettings, VllmSettings
from quantgate.backends.vllm import engine_args, lm_eval_model_args
from quantgate.errors import ConfigError
from quantgate.registry import load_registry

from .helpers import OFFLINE, REPO


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


def test_vllm_engine_args_pass_parallelism_through():
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    entry = registry.models["llama31_405b"]
    artifact = Artifact("x", Path("/models/405b"), "0" * 64, None, {})  # type: ignore[arg-type]
    args = engine_args(artifact, entry.backend_settings)
    assert args["tensor_parallel_size"] == 8 and args["pipeline_parallel_size"] == 2
    assert args["distributed_executor_backend"] == "ray"
    assert args["trust_remote_code"] is False and args["max_model_len"] == 8192
    assert "pretrained=/models/405b" in lm_eval_model_args(artifact, entry.backend_settings)
    # two GPUs on one node and no executor named: vLLM's multiprocessing one
    two = VllmSettings(tensor_parallel_size=2)
    assert engine_args(artifact, two)["distributed_executor_backend"] == "mp"
    quantized = Artifact("q", Path("/m"), "0" * 64, None, {"quantization": {"library": "quanto"}})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="load_quantized \\(quanto\\) runs on transformers"):
        engine_args(quantized, two)


@pytest.mark.real_model
def test_same_weights_same_ids_agree_across_backends(tmp_path):
    """llama.cpp (F16 GGUF, F32 KV cache) and transformers (the checkpoint made from it) on
    identical token ids: PPL within 0.1 %; tokenizer differences are reported, not hidden."""
    from quantgate.artifacts import ArtifactStore
    from quantgate.backends.llama_cpp import LlamaCppBackend
    from quantgate.backends.transformers import TransformersBackend
    from quantgate.perplexity import make_chunks, perplexity, scored_logprobs

    registry = load_registry(REPO / "fixtures" / "models.yaml")
    store = ArtifactStore(registry)
    gguf, hf = store.baseline("smollm2"), store.baseline("smollm2_hf")
    llama = LlamaCppBackend(gguf, LlamaCppSettings(n_ctx=512, kv_cache_type="f32"))
    tf = TransformersBackend(hf, TransformersSettings(n_ctx=512))
    text = (REPO / "fixtures" / "data" / "wikitext2" / "wiki.test.excerpt.raw").read_text()
    ids = llama.tokenize(text)
    chunks = make_chunks(ids, 512, llama.bos_token_id, max_chunks=2)
    nll = {name: [] for name in ("llama", "tf")}
    for chunk in chunks:
        for name, backend in (("llama", llama), ("tf", tf)):
            nll[name].append(scored_logprobs(backend.logits(chunk, 256), chunk, name, 256)[1])
    p_llama, p_tf = (perplexity(np.concatenate(nll[k])) for k in ("llama", "tf"))
    assert abs(p_tf / p_llama - 1) < 1e-3, (p_llama, p_tf)
    tf_ids = tf.tokenize(text)
    report = {
        "llama_cpp_tokens": len(ids),
        "transformers_tokens": len(tf_ids),
        "ppl_llama_cpp": p_llama,
        "ppl_transformers": p_tf,
    }
    (tmp_path / "cross_backend.json").write_text(json.dumps(report))
    print(report)
    llama.close()


#: one passing variant per CPU family: LLM.int8, quanto int8, FP8 dynamic, SmoothQuant W8A8
GOOD_CPU_VARIANTS = ("bnb-int8", "quanto-int8", "llmc-fp8-dynamic", "llmc-w8a8-smoothquant")


@pytest.mark.real_model
def test_cpu_families_pass_and_their_canaries_fail(gate_run):
    """bitsandbytes, optimum-quanto and llm-compressor on SmolLM2: each family's good variant
    passes every gate (perplexity, KLD, retention, throughput, footprint), its canary is caught."""
    run = gate_run("-m", "cpu_slow", "--model", "smollm2_hf")
    assert run.returncode == 0, run.output[-3000:]
    outcomes = run.outcomes()
    for good in GOOD_CPU_VARIANTS:
        pair = f"smollm2_hf-{good}"
        mine = {k: v for k, v in outcomes.items() if pair in k}
        assert set(mine.values()) == {"passed"}, mine
        for test in ("perplexity", "kl_divergence", "footprint"):
            assert mine[f"test_{test}[{pair}]"] == "passed"
        assert mine[f"test_retention[{pair}-winogrande]"] == "passed"
        assert (
            mine[f"test_throughput[{pair}-pp]"] == mine[f"test_throughput[{pair}-tg]"] == "passed"
        )
    for canary in ("bnb-nf4", "quanto-int4", "llmc-w4a16-rtn-channel"):
        assert outcomes[f"test_perplexity[smollm2_hf-{canary}]"] == "xfailed"
        assert outcomes[f"test_kl_divergence[smollm2_hf-{canary}]"] == "xfailed"
    assert outcomes["test_retention[smollm2_hf-llmc-w4a16-rtn-channel-winogrande]"] == "xfailed"
    # a real compression, calibrated GPTQ int4, too lossy for a 135M model: declared, and caught
    assert outcomes["test_perplexity[smollm2_hf-llmc-w4a16-gptq-g64]"] == "xfailed"
    # pruning the checkpoint, and FP8 on the pruned checkpoint (a chain across methods)
    for pruned in ("pruned2", "pruned2-fp8"):
        assert outcomes[f"test_kl_divergence[smollm2_hf-{pruned}]"] == "xfailed"
    rows = run.summary()
    # the zeros are read where the layers hold a matrix of values (LLM.int8 rounds a few small
    # weights to zero), and left out where they hold packed int4 (compressed-tensors)
    assert rows["smollm2_hf-bnb-int8", "weight_sparsity_pct"]["value"] < 5
    assert ("smollm2_hf-llmc-w4a16-gptq-g64", "weight_sparsity_pct") not in rows
    assert rows["smollm2_hf-bnb-int8", "size_ratio"]["size_measured_as"] == "loaded weights"
    assert rows["smollm2_hf-bnb-int8", "size_ratio"]["value"] < 0.5
    # a compressed-tensors checkpoint is measured by its files: FP8 weights, float32 embeddings
    assert rows["smollm2_hf-llmc-fp8-dynamic", "size_ratio"]["size_measured_as"] == "file"
    assert rows["smollm2_hf-llmc-fp8-dynamic", "size_ratio"]["value"] < 0.5
    assert rows["smollm2_hf-llmc-fp8-dynamic", "ppl_increase_pct"]["value"] < 5
    rtn, gptq = (
        rows[f"smollm2_hf-llmc-w4a16-{name}", "ppl_increase_pct"]["value"]
        for name in ("rtn-channel", "gptq-g64")
    )
    assert rtn > 50 and 10 < gptq < rtn
    # the same blocks dropped as on the GGUF, and the same loss, through the other backend
    assert rows["smollm2_hf-pruned2", "size_ratio"]["pruned_blocks"] == [13, 14]
    assert rows["smollm2_hf-pruned2", "size_ratio"]["n_blocks"] == 28
    assert 35 < rows["smollm2_hf-pruned2", "ppl_increase_pct"]["value"] < 48
    chain = rows["smollm2_hf-pruned2-fp8", "size_ratio"]
    assert chain["pruned_blocks"] == [13, 14] and chain["value"] < 0.45
    # every pair records its speed: tokens/s of the variant and of the baseline, same run
    for good in GOOD_CPU_VARIANTS:
        assert rows[f"smollm2_hf-{good}", "tg_tps_ratio"]["baseline"] > 0


@pytest.mark.real_model
def test_fp8_recipe_that_misses_the_mlp_fails_the_size_gate(gate_run, registry_copy):
    """The footprint gate on a transformers checkpoint, failing: an FP8 recipe that targets the
    attention projections only leaves the MLP (two thirds of the weights) in float32, over the
    size bound set for FP8 in thresholds/smollm2_hf.yaml."""

    def attention_only(doc):
        recipe = doc["models"]["smollm2_hf"]["compressions"]["llmc-fp8-dynamic"]["recipe"]
        recipe[0]["targets"] = ["re:.*self_attn.*_proj$"]

    run = gate_run(
        "tests/test_throughput.py::test_footprint",
        f"--registry={registry_copy(attention_only)}",
        "--model",
        "smollm2_hf",
        "--compression",
        "llmc-fp8-dynamic",
    )
    assert run.returncode == 1, run.output[-3000:]
    assert run.outcomes() == {"test_footprint[smollm2_hf-llmc-fp8-dynamic]": "failed"}
    row = run.summary()["smollm2_hf-llmc-fp8-dynamic", "size_ratio"]
    assert row["verdict"] == "FAIL" and row["value"] > 0.6, row


def test_vllm_backend_serves_the_checkpoint_on_a_gpu():
    pytest.importorskip("vllm", reason="vLLM is GPU-only: it is installed by `tox -e gpu` alone")
    from quantgate.artifacts import ArtifactStore
    from quantgate.backends.vllm import VllmBackend

    registry = load_registry(REPO / "fixtures" / "models.yaml")
    artifact = ArtifactStore(registry).baseline("smollm2_hf")
    backend = VllmBackend(artifact, VllmSettings(n_ctx=512, dtype="auto", device="cuda"))
    prompt = backend.tokenize("The capital of France is")
    assert backend.generate(prompt, 8)
    backend.process_prompt(prompt)
    backend.decode_one_by_one(prompt)
    with pytest.raises(ConfigError, match="top-k logprobs"):
        backend.logits(prompt)
