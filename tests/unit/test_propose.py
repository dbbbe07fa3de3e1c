"""quantgate.propose without a model: the parts a variant is split into, the predicted frontier
(checked against an exhaustive search), the pick under a target, and the overrides that build a
recipe (checked against the tensors each pattern matches)."""

from __future__ import annotations

import itertools
import re

import pytest

from quantgate.artifacts.gguf_file import TensorInfo
from quantgate.diagnose import groups
from quantgate.errors import ConfigError, EvaluationError
from quantgate.propose import (
    Option,
    _fractions,
    _role_types,
    _uniform,
    expected_types,
    frontier,
    parts_of,
    pick,
    recipe_types,
    role_of,
    tensor_bytes,
)

KINDS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
BASE = {
    "token_embd.weight": TensorInfo("f16", 2 * 4096),
    **{f"blk.{i}.{k}.weight": TensorInfo("f16", 2 * 1024) for i in range(12) for k in KINDS},
    **{f"blk.{i}.attn_norm.weight": TensorInfo("f32", 64) for i in range(12)},
}
VARIANT = {
    **BASE,
    "token_embd.weight": TensorInfo("q8_0", 4096 // 32 * 34),
    **{
        f"blk.{i}.{k}.weight": TensorInfo("q3_k" if k == "ffn_down" else "q4_0", 1024 // 32 * 18)
        for i in range(12)
        for k in KINDS
    },
}


def test_a_tensor_s_role_is_what_llama_cpp_s_mixes_type_apart():
    assert role_of("blk.3.attn_v.weight") == (3, "attn")
    assert role_of("blk.11.ffn_up.weight") == (11, "ffn_up_gate")
    assert role_of("blk.0.ffn_down.weight") == (0, "ffn_down")
    assert role_of("token_embd.weight") == (None, "token_embd")
    # a kind no role lists is its own role, never merged into another
    assert role_of("blk.2.ssm_in.weight") == (2, "ssm_in")


def test_parts_split_each_block_by_role_and_leave_the_norms():
    parts = parts_of(groups(BASE, VARIANT))
    assert [p.name for p in parts[:4]] == [
        "token_embd", "blk.0.attn", "blk.0.ffn_down", "blk.0.ffn_up_gate",
    ]  # fmt: skip
    assert len(parts) == 1 + 12 * 3
    attn = parts[1]
    assert set(attn.types) == {f"blk.0.{k}.weight" for k in KINDS[:4]}
    assert all(t == "q4_0" for t in attn.types.values())


def test_tensor_bytes_follow_ggml_block_sizes():
    f16 = TensorInfo("f16", 2 * 1024)
    assert tensor_bytes(f16, "q8_0") == 1024 // 32 * 34
    assert tensor_bytes(f16, "q4_0") == 1024 // 32 * 18
    assert tensor_bytes(TensorInfo("f16", 2 * 512), "q6_k") == 210 * 2
    # from a quantized tensor too: the element count is what carries over
    assert tensor_bytes(TensorInfo("q4_0", 1024 // 32 * 18), "f16") == 2 * 1024


def _options(table: dict[str, list[tuple[str, float, int]]]) -> dict[str, list[Option]]:
    return {p: [Option(p, c, k, b) for c, k, b in opts] for p, opts in table.items()}


OPTIONS = _options(
    {
        "a": [("variant", 0.20, 100), ("q5_0", 0.05, 130), ("q8_0", 0.01, 200)],
        "b": [("variant", 0.10, 100), ("q5_0", 0.06, 130), ("q8_0", 0.05, 200)],
        "c": [("variant", 0.02, 300), ("q4_0", 0.06, 160)],
    }
)


def _exhaustive(options, whole, other):
    """Every combination's (bytes, predicted KLD)."""
    out = []
    for combo in itertools.product(*options.values()):
        kld = whole + sum(
            o.kld - opts[0].kld for o, opts in zip(combo, options.values(), strict=True)
        )
        out.append((other + sum(o.n_bytes for o in combo), kld))
    return out


def test_the_frontier_is_the_lower_hull_of_every_combination():
    whole, other = 0.32, 1000
    points = frontier(OPTIONS, whole, other)
    every = _exhaustive(OPTIONS, whole, other)
    # no combination is both smaller and lower than a frontier point
    for pt in points:
        assert not any(b < pt.n_bytes and k < pt.predicted_kld - 1e-12 for b, k in every), pt
    # its ends: the fewest bytes (c lowered, nothing raised) and the least KLD
    assert points[0].choices == {"c": "q4_0"} and points[0].n_bytes == 1000 + 100 + 100 + 160
    assert points[-1].predicted_kld == pytest.approx(min(k for _, k in every))
    # bytes rise and predictions fall along it
    assert all(a.n_bytes < b.n_bytes for a, b in itertools.pairwise(points))
    assert all(a.predicted_kld > b.predicted_kld for a, b in itertools.pairwise(points))


def test_pick_is_the_smallest_point_under_the_target_and_one_line_when_none_is():
    points = frontier(OPTIONS, 0.32, 1000)
    chosen = pick(points, 0.2)
    assert chosen.predicted_kld <= 0.2
    assert all(pt.n_bytes >= chosen.n_bytes for pt in points if pt.predicted_kld <= 0.2)
    # "a" buys the most KLD per byte: raised first
    assert chosen.choices["a"] == "q5_0"
    with pytest.raises(EvaluationError, match=r"under KLD 0\.01 \(the best: 0\.08\)"):
        pick(points, 0.01)


def test_a_recipe_s_overrides_type_exactly_its_parts():
    parts = {p.name: p for p in parts_of(groups(BASE, VARIANT))}
    choices = {
        "blk.1.ffn_down": "q6_k", "blk.10.ffn_down": "q6_k", "blk.11.ffn_down": "q5_k",
        "blk.1.attn": "q8_0", "token_embd": "q4_0",
    }  # fmt: skip
    tt = recipe_types(choices, parts)
    assert tt.token_embedding == "q4_0" and tt.output is None
    expected = expected_types(VARIANT, choices, parts)

    # what llama.cpp does with them: the first pattern that matches sets a block tensor's type
    def typed(name: str) -> str:
        if name == "token_embd.weight":
            return tt.token_embedding or VARIANT[name].type
        return next((t for p, t in tt.patterns if re.search(p, name)), VARIANT[name].type)

    assert {name: typed(name) for name in VARIANT} == expected
    assert expected["blk.10.ffn_down.weight"] == "q6_k"
    assert expected["blk.0.ffn_down.weight"] == "q3_k"  # block 10's pattern is not block 0's
    assert expected["blk.1.attn_output.weight"] == "q8_0"
    assert expected["blk.1.ffn_up.weight"] == "q4_0"


def test_bad_types_and_targets_are_one_line():
    assert _role_types(["ffn_down=q6_k,Q8_0"]) == {"ffn_down": ("q6_k", "q8_0")}
    with pytest.raises(ConfigError, match=r"ROLE one of attn, ffn_up_gate, ffn_down"):
        _role_types(["ffn=q6_k"])
    with pytest.raises(ConfigError, match=r"unknown ggml type 'q7_k'"):
        _role_types(["attn=q7_k"])
    assert _uniform("Q3_K_M, Q4_K_M") == ("Q3_K_M", "Q4_K_M")
    with pytest.raises(ConfigError, match=r"--uniform: 'Q4_K_X' is not a llama.cpp quant type"):
        _uniform("Q4_K_X")
    assert _fractions("0.5,0.7") == (0.5, 0.7)
    with pytest.raises(ConfigError, match="--targets '0,1'"):
        _fractions("0,1")
