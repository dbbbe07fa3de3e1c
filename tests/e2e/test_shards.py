"""Merging the shards' reports into one verdict (python -m quantgate.night.merge), on the real
model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support.helpers import REPO, run_gate, verdict_rows


def _merge(out, *folders):
    cmd = [sys.executable, "-m", "quantgate.night.merge", str(out), *map(str, folders)]
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
    # each shard's machine is kept: in summary.json, in each testsuite's JUnit properties, and
    # one "Made on" line per shard at the top of summary.md
    machines = json.loads((tmp_path / "merged" / "summary.json").read_text())["machines"]
    assert sorted(machines) == ["shard 1/2", "shard 2/2"]
    assert all(m["cpu"] and m["cores"] and "llama_cpp_system_info" in m for m in machines.values())
    junit = (tmp_path / "merged" / "junit.xml").read_text()
    assert junit.count('name="quantgate_machine.cpu"') == 2
    made_on = [
        line
        for line in (tmp_path / "merged" / "summary.md").read_text().splitlines()
        if line.startswith("Made on (shard ")
    ]
    assert len(made_on) == 2 and "llama.cpp weights: " in made_on[0]
    # one shard lost: the merge fails and names what never ran
    held = json.loads((folders[1] / "shard.json").read_text())["parts"][1]
    partial = _merge(tmp_path / "partial", folders[0])
    assert partial.returncode == 1
    assert f"shard 2/2 is missing: its pairs never ran: {', '.join(held)}" in partial.stderr
