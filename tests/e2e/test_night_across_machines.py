"""A night across machines on the real model: a baselines stage, then two shards as separate
processes, each with its own empty local cache (another machine) and one shared store (a
local directory, or an S3 API on 127.0.0.1), then the merge. What it proves: the baseline is
computed once, a killed shard rerun on a fresh machine computes only what the store lacks,
and the merged summary is the one an unsharded run of the same pairs writes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from quantgate.artifacts.cache import results_free_cache
from quantgate.artifacts.shared_store import Store
from support.helpers import OFFLINE, REPO, gate_command, run_gate, verdict_rows

pytestmark = [pytest.mark.real_model, pytest.mark.child_pytest]

SELECTION = ("-m", "smoke", "-k", "perplexity or kl_divergence")
#: a variant's PPL/KLD computed (the baseline's log-probs have their own line)
COMPARED = re.compile(r"\[quantgate\] (smollm2-\S+): PPL and KLD vs .*: done in")
BASELINE = "baseline log-probs"


def _machine(tmp_path, name: str, store: str | None) -> dict[str, str]:
    """A fresh machine: the downloads and built files of this one (no rebuild), no result."""
    env = {"QUANTGATE_CACHE": str(results_free_cache(tmp_path / name))}
    return env | ({"QUANTGATE_STORE": store} if store else {})


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """The shipped registry made small enough to run five times: 4 perplexity chunks, and 8
    items a benchmark for the baselines stage. Returns the selection's arguments."""
    from benchmarks.registry_copy import with_absolute_paths

    fixtures = REPO / "fixtures"
    doc = with_absolute_paths(yaml.safe_load((fixtures / "models.yaml").read_text()), fixtures)
    doc["evaluation"]["perplexity"]["max_chunks"] = 4
    for bench in doc["models"]["smollm2"]["benchmarks"].values():
        bench["limit"] = 8
    path = tmp_path_factory.mktemp("night") / "models.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return (f"--registry={path}",)


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory, night):
    """The same pairs in one process, computed afresh (no store): the rows to match."""
    tmp = tmp_path_factory.mktemp("unsharded")
    run = run_gate(*night, *SELECTION, reports=tmp / "reports", env=_machine(tmp, "m", None))
    assert run.returncode == 0, run.output[-3000:]
    return verdict_rows(run.reports)


def _quality_results(store: str) -> list[str]:
    return [k for k in Store(store).listing() if k.startswith("results/quality/")]


def _killed_after_one_pair(night, reports, env, store: str, held: int) -> list[str]:
    """Start a shard and stop it (SIGTERM, as a runner's timeout does) once one pair is done."""
    proc = subprocess.Popen(
        gate_command(*night, *SELECTION, "--shard", "1/2", reports=reports),
        cwd=REPO,
        env={**os.environ, **OFFLINE, **env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    done, deadline = [], time.monotonic() + 900
    assert proc.stdout is not None
    for line in proc.stdout:
        assert BASELINE not in line, "a shard computed the baseline the store holds"
        if m := COMPARED.search(line):
            done.append(m.group(1))
            # the result is published just after its line: kill once the store holds it
            while len(_quality_results(store)) == held and time.monotonic() < deadline:
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            break
        assert time.monotonic() < deadline, "the shard never finished a pair"
    proc.wait(timeout=120)
    assert proc.returncode != 0 and done
    return done


# The night on the S3 API only: a local directory store does each thing the night asks of a
# store (a file and a folder published whole, two writers of one entry, a second machine
# fetching) in tests/unit/test_store.py, where S3 does it too; the flow around the store is
# the same for both, and running it twice cost 75 s a run
@pytest.mark.parametrize("store_url", ["s3"], indirect=True)
def test_shards_on_two_machines_share_one_store_and_merge_to_the_unsharded_rows(
    store_url, tmp_path, night, unsharded
):
    first = run_gate(
        *night, "tests/test_baselines.py", "--model", "smollm2", reports=tmp_path / "baselines",
        env=_machine(tmp_path, "stage1", store_url),
    )  # fmt: skip
    assert first.returncode == 0, first.output[-3000:]
    assert BASELINE in first.output
    one = run_gate(
        *night, *SELECTION, "--shard", "2/2", reports=tmp_path / "s2",
        env=_machine(tmp_path, "shard2", store_url),
    )  # fmt: skip
    assert one.returncode == 0, one.output[-3000:]
    assert BASELINE not in one.output  # read from the store
    # shard 1 holds two of the three pairs: killed after one, then rerun on another machine
    parts = json.loads((tmp_path / "s2" / "shard.json").read_text())["parts"]
    assert list(map(len, parts)) == [2, 1]
    held = _quality_results(store_url)  # shard 2's pair
    machine = _machine(tmp_path, "lost", store_url)
    done = _killed_after_one_pair(night, tmp_path / "s1", machine, store_url, len(held))
    rerun = run_gate(
        *night, *SELECTION, "--shard", "1/2", reports=tmp_path / "s1",
        env=_machine(tmp_path, "shard1", store_url),
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.output[-3000:]
    recomputed = COMPARED.findall(rerun.output)
    assert recomputed == sorted(set(parts[0]) - set(done))  # only what the store lacked
    assert BASELINE not in rerun.output
    merged = subprocess.run(
        [sys.executable, "-m", "quantgate.night.merge", str(tmp_path / "merged"),
         str(tmp_path / "s1"), str(tmp_path / "s2")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    assert verdict_rows(tmp_path / "merged") == unsharded
