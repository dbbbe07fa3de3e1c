"""quantgate.diagnose without a model: which tensors form each probe, the overrides that give
exactly them, the selection of groups, and the ranked table's arithmetic."""

from __future__ import annotations

import re

import pytest

from quantgate.artifacts.gguf_file import TensorInfo
from quantgate.diagnose import (
    Diagnosis,
    Probe,
    groups,
    recipe,
    select_groups,
    table,
)
from quantgate.errors import ConfigError, EvaluationError
from quantgate.verdicts.stats import Interval


def _model(types: dict[str, str], n_bytes: int = 100) -> dict[str, TensorInfo]:
    return {name: TensorInfo(t, n_bytes) for name, t in types.items()}


BASE = _model(
    {
        "token_embd.weight": "f16",
        "output_norm.weight": "f32",
        **{f"blk.{i}.{t}.weight": "f16" for i in range(3) for t in ("attn_q", "ffn_down")},
        **{f"blk.{i}.attn_norm.weight": "f32" for i in range(3)},
    }
)
VARIANT = {
    **BASE,
    "token_embd.weight": TensorInfo("q8_0", 53),
    **{f"blk.{i}.attn_q.weight": TensorInfo("q4_0", 28) for i in range(3)},
    **{f"blk.{i}.ffn_down.weight": TensorInfo("q3_k", 22) for i in range(3)},
}


def test_groups_hold_the_retyped_tensors_in_model_order():
    found = groups(BASE, VARIANT)
    assert [g.name for g in found] == ["token_embd", "blk.0", "blk.1", "blk.2"]
    blk1 = found[2]
    # the norms stay float32 in both: not part of any probe
    assert blk1.types == {"blk.1.attn_q.weight": "q4_0", "blk.1.ffn_down.weight": "q3_k"}
    assert (blk1.bytes_variant, blk1.bytes_baseline) == (50, 200)
    assert blk1.type_summary == "q3_k, q4_0"


def test_block_10_sorts_after_block_9():
    base = _model({f"blk.{i}.attn_q.weight": "f16" for i in (2, 10, 9)})
    variant = _model({f"blk.{i}.attn_q.weight": "q4_0" for i in (2, 10, 9)})
    assert [g.name for g in groups(base, variant)] == ["blk.2", "blk.9", "blk.10"]


def test_a_variant_with_other_tensors_is_one_line():
    pruned = {k: v for k, v in VARIANT.items() if not k.startswith("blk.2.")}
    with pytest.raises(EvaluationError, match="hold different tensors"):
        groups(BASE, pruned)


def test_the_recipe_names_each_tensor_exactly_and_the_embedding_by_its_option():
    r = recipe({"blk.1.attn_q.weight": "q4_0", "token_embd.weight": "q8_0"})
    assert r.token_embedding == "q8_0" and r.output is None
    ((pattern, kind),) = r.patterns
    assert kind == "q4_0"
    # llama.cpp searches each name with each pattern: an exact one matches one tensor, never
    # blk.11's or blk.1's other tensors
    assert re.search(pattern, "blk.1.attn_q.weight")
    assert not re.search(pattern, "blk.11.attn_q.weight")
    assert not re.search(pattern, "xblk.1.attn_q.weight")


def test_groups_are_selected_by_number_range_and_name():
    found = groups(BASE, VARIANT)
    assert [g.name for g in select_groups(found, "0-1,token_embd,1")] == [
        "blk.0",
        "blk.1",
        "token_embd",
    ]
    assert select_groups(found, None) == found
    with pytest.raises(ConfigError, match=r"blk\.7 not re-typed by the variant; it re-types"):
        select_groups(found, "7")


def _probe(group: str, kld: float) -> Probe:
    return Probe(
        group, "q4_0", 2, 50, 200, Interval(kld, kld * 0.8, kld * 1.2), Interval(1, 0, 2), 99
    )


def test_the_table_ranks_by_kld_and_the_shares_add_up():
    d = Diagnosis(
        "m", "Q2_K", 4, 512, 3, Interval(0.5, 0.4, 0.6), Interval(30, 25, 35), 1000, 4000,
        [_probe("blk.0", 0.1), _probe("blk.1", 0.3), _probe("token_embd", 0.05)],
    )  # fmt: skip
    assert [p.group for p in d.ranked()] == ["blk.1", "blk.0", "token_embd"]
    assert d.top_share(1) == pytest.approx(0.6)
    assert d.additivity == pytest.approx(0.9)
    text = table(d)
    rows = [line for line in text.splitlines() if line.startswith("| 1 ")]
    assert rows and "blk.1" in rows[0] and "60.0%" in rows[0]
    assert "0.90x the whole variant's KLD" in text
