"""Structured pruning: the block-influence math, the GGUF rewrite (llama.cpp loads the shallower
file), registry chains, and the pruned and pruned+Q4_K_M variants through every gate."""

from __future__ import annotations

import numpy as np
import pytest

from quantgate.errors import ConfigError
from quantgate.prune import block_influence, choose_blocks, drop_blocks


def test_block_influence_is_one_minus_mean_cosine():
    h0 = np.array([[1.0, 0.0], [0.0, 1.0]])
    same = block_influence([h0, h0.copy()])
    turned = block_influence([h0, np.array([[0.0, 1.0], [0.0, 1.0]])])  # cos 0 and 1
    assert same == pytest.approx([0.0]) and turned == pytest.approx([0.5])


def test_choose_blocks_takes_the_least_influential_unprotected():
    scores = [0.9, 0.02, 0.5, 0.01, 0.03, 1.0]
    assert choose_blocks(scores, 2, protect=[0, 5]) == [1, 3]
    assert choose_blocks(scores, 1, protect=[3]) == [1]
    with pytest.raises(ConfigError, match="cannot drop 6 of 6 blocks"):
        choose_blocks(scores, 6)


@pytest.mark.real_model
def test_dropped_blocks_leave_a_file_llama_cpp_loads(smollm2_artifacts, tmp_path):
    import gguf
    from llama_cpp import Llama

    baseline, _ = smollm2_artifacts
    out = tmp_path / "pruned.gguf"
    assert drop_blocks(baseline.path, out, [3, 7], "test") == 28
    reader = gguf.GGUFReader(out)
    assert int(reader.get_field("llama.block_count").contents()) == 28
    names = {t.name for t in reader.tensors}
    assert "blk.27.attn_q.weight" in names and "blk.28.attn_q.weight" not in names
    before = {t.name: t for t in gguf.GGUFReader(baseline.path).tensors}
    # block 8 of the original is block 6 of the pruned file, byte for byte
    moved = next(t for t in reader.tensors if t.name == "blk.6.ffn_down.weight")
    assert np.array_equal(moved.data, before["blk.8.ffn_down.weight"].data)
    assert out.stat().st_size < baseline.path.stat().st_size
    # logits_all: without it llama-cpp-python fills only the last row of `scores`, and the
    # other rows are uninitialised memory (a fresh-clone run read an inf there)
    llm = Llama(model_path=str(out), n_ctx=64, logits_all=True, verbose=False)
    try:
        tokens = llm.tokenize(b"The capital of France is")
        llm.eval(tokens)
        assert np.isfinite(np.asarray(llm.scores[: len(tokens)])).all()
    finally:
        llm.close()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"method": "llama_quantize", "quant_type": "Q4_K_M", "base": "prunedd"},
            "base: no compression 'prunedd'",
        ),
        ({"method": "prune_blocks", "n_blocks": 2}, r"compressions\.bad\.calibration: required"),
    ],
)
def test_bad_chains_and_pruning_entries_are_one_line_errors(registry_copy, entry, message):
    from quantgate.registry import load_registry

    def edit(doc):
        doc["models"]["smollm2"]["compressions"]["bad"] = entry

    with pytest.raises(ConfigError, match=message) as exc:
        load_registry(registry_copy(edit))
    assert "\n" not in str(exc.value)


def test_a_base_chain_that_loops_is_an_error(registry_copy):
    from quantgate.registry import load_registry

    def edit(doc):
        comps = doc["models"]["smollm2"]["compressions"]
        comps["a"] = {"method": "llama_quantize", "quant_type": "Q4_K_M", "base": "b"}
        comps["b"] = {"method": "llama_quantize", "quant_type": "Q8_0", "base": "a"}

    with pytest.raises(ConfigError, match="base chain loops: a -> b -> a"):
        load_registry(registry_copy(edit))


@pytest.mark.real_model
def test_pruned_and_pruned_q4_k_m_run_through_every_gate(gate_run):
    run = gate_run("-m", "pruned", "--model", "smollm2", "--benchmark-disable")
    assert run.returncode == 0, run.output[-3000:]
    outcomes = run.outcomes()
    for pair in ("smollm2-pruned2", "smollm2-pruned2-Q4_K_M"):
        mine = {
            k: v
            for k, v in outcomes.items()
            if (f"[{pair}]" in k or f"[{pair}-" in k)
            and (pair.endswith("Q4_K_M") or "pruned2-Q4_K_M" not in k)
        }
        # perplexity, kld, pp, tg, footprint, four benchmarks, D_overall
        assert len(mine) == 10, mine
        # declared canaries (+41 % PPL for 2 blocks of 30): their declared gates fail as
        # strict xfails, the rest pass
        assert mine[f"test_perplexity[{pair}]"] == mine[f"test_kl_divergence[{pair}]"] == "xfailed"
        assert mine[f"test_retention[{pair}-winogrande]"] == "xfailed"
        assert mine[f"test_throughput[{pair}-tg]"] == "passed"
        assert set(mine.values()) <= {"passed", "xfailed"}, mine
    rows = run.summary()
    pruned, chain = (
        rows["smollm2-pruned2", "size_ratio"],
        rows["smollm2-pruned2-Q4_K_M", "size_ratio"],
    )
    assert pruned["n_blocks"] == chain["n_blocks"] == 28
    assert pruned["pruned_blocks"] == chain["pruned_blocks"] and len(pruned["pruned_blocks"]) == 2
    assert chain["value"] < pruned["value"] < 1.0
    # the chosen blocks and their scores are logged
    assert "drop blocks [" in run.output and "block influence, lowest first" in run.output
