"""Shards of a night in a child pytest (--shard K/N collects whole pairs; --plan prints them)."""

from __future__ import annotations

import json

from support.helpers import collected, run_gate


def test_shards_collect_whole_pairs_that_partition_the_selection(gate_run, tmp_path):
    selection = ("--collect-only", "-q", "-m", "smoke")
    everything = set(collected(gate_run(*selection)))
    shards = []
    for k in (1, 2):
        run = run_gate(*selection, "--shard", f"{k}/2", reports=tmp_path / f"s{k}")
        assert run.returncode == 0, run.output[-2000:]
        shards.append(set(collected(run)))
        manifest = json.loads((tmp_path / f"s{k}" / "shard.json").read_text())
        assert manifest["shard"] == k and manifest["of"] == 2
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    assert shards[0] | shards[1] == everything
    for pair in ("smollm2-Q8_0", "smollm2-Q4_K_M", "smollm2-Q2_K"):
        holders = [i for i, ids in enumerate(shards) if any(f"[{pair}" in t for t in ids)]
        assert len(holders) == 1, f"{pair} is split across shards"


def test_plan_prints_the_pairs_costs_and_shards_needed(gate_run, tmp_path):
    last = tmp_path / "summary.json"
    last.write_text(json.dumps({"rows": [], "wall_seconds": {"smollm2-Q8_0": 120}}))
    run = gate_run(
        "--collect-only", "-q", "-m", "smoke", f"--shard-timings={last}",
        "--quantgate-plan", "200",
    )  # fmt: skip
    assert run.returncode == 0, run.output[-2000:]
    assert "| smollm2-Q8_0 | 120 | last summary |" in run.output
    assert "| smollm2-Q2_K | 120 | median |" in run.output
    assert "| **4 pairs** | 480 |" in run.output
    assert "a budget of 200 s per shard needs --shard K/4" in run.output  # one pair each
