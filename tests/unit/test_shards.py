"""Shards of a night: the pair-granular split (--shard K/N), and merging the shards' reports
into one verdict (python -m quantgate.merge)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from quantgate.errors import ConfigError
from quantgate.shards import expected_cost, parse_shard, split

from .helpers import REPO, collected, run_gate, verdict_rows


@pytest.mark.parametrize(
    ("text", "message"),
    [("2", "expected K/N"), ("a/b", "expected K/N"), ("0/3", "between 1 and N"), ("4/3", "got 4")],
)
def test_a_bad_shard_is_an_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_shard(text)


def test_the_split_partitions_deterministically_and_balances_by_cost():
    units = [f"m-{c}" for c in "abcdefg"]
    parts = split(units, 3)
    assert split(reversed(units), 3) == parts  # the same on every machine
    assert sorted(u for p in parts for u in p) == sorted(units)
    assert sorted(map(len, parts)) == [2, 2, 3]  # no timings: equal counts
    # with timings: the longest first, each to the least loaded part (Graham's LPT)
    timings = {"m-a": 10.0, "m-b": 9.0, "m-c": 2.0, "m-d": 2.0, "m-e": 1.0}
    parts = split(["m-a", "m-b", "m-c", "m-d", "m-e"], 2, timings)
    assert parts == [["m-a", "m-d"], ["m-b", "m-c", "m-e"]]  # a | b, c | d | e
    assert [expected_cost(p, timings) for p in parts] == [12.0, 12.0]
    # an untimed unit costs the median of the timed ones, over the whole selection
    assert expected_cost(["m-a", "m-new"], {"m-a": 4.0}) == 8.0
    assert expected_cost(["m-new"], {"m-a": 4.0}, among=["m-a", "m-new"]) == 4.0


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


def _merge(out, *folders):
    cmd = [sys.executable, "-m", "quantgate.merge", str(out), *map(str, folders)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


@pytest.mark.real_model
def test_merged_shards_give_the_unsharded_verdict_and_a_missing_one_is_named(gate_run, tmp_path):
    selection = ("-m", "smoke", "-k", "perplexity or kl_divergence")
    whole = gate_run(*selection)
    assert whole.returncode == 0, whole.output[-3000:]
    folders = []
    for k in (1, 2):
        run = run_gate(*selection, "--shard", f"{k}/2", reports=tmp_path / f"s{k}")
        assert run.returncode == 0, run.output[-3000:]
        folders.append(tmp_path / f"s{k}")
    merged = _merge(tmp_path / "merged", *folders)
    assert merged.returncode == 0, merged.stderr
    assert verdict_rows(tmp_path / "merged") == verdict_rows(whole.reports)
    assert (tmp_path / "merged" / "summary.md").is_file()
    assert (tmp_path / "merged" / "junit.xml").read_text().count("<testcase") == 6
    # one shard lost: the merge fails and names what never ran
    held = json.loads((folders[1] / "shard.json").read_text())["parts"][1]
    partial = _merge(tmp_path / "partial", folders[0])
    assert partial.returncode == 1
    assert f"shard 2/2 is missing: its pairs never ran: {', '.join(held)}" in partial.stderr


def test_the_plan_sizes_the_shards_for_a_budget():
    from quantgate.shards import shards_needed

    timings = {"a": 120.0, "b": 100.0, "c": 90.0}
    assert shards_needed(["a", "b", "c", "d"], timings, 200) == 3  # d costs the median, 100
    assert shards_needed(["a", "b", "c"], timings, 400) == 1
    assert shards_needed(["a", "b"], timings, 110) is None  # a alone exceeds it


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
