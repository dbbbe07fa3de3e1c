"""Layer sensitivity on the real SmolLM2 (quantgate.diagnose): the Q2_K canary's loss by
block, through the gate's --diagnose and through the CLI at another thread count.

Measured here (2 cores, 2 and 4 chunks): the 31 probes (30 blocks and the token embedding)
sum to 0.98-1.03x the whole variant's KLD; the last block holds about a fifth of it, block 11
a tenth; the embedding at Q8_0 almost nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support.helpers import OFFLINE, REPO

pytestmark = [pytest.mark.real_model, pytest.mark.untimed]

CHUNKS = "2"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "quantgate.diagnose", "--model", "smollm2", "--compression",
         "Q2_K", "--chunks", CHUNKS, *args],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
        env={**os.environ, **OFFLINE, **(env or {})},
    )  # fmt: skip


def test_the_canary_s_loss_by_block_adds_up_and_its_ranking_holds_at_another_thread_count(
    gate_run, tmp_path
):
    from quantgate.artifacts.cache import cache_root, results_free_cache
    from quantgate.night.machine import available_cores

    run = gate_run(
        "tests/test_perplexity.py", "-m", "smoke", "--model", "smollm2",
        "--compression", "Q2_K", f"--diagnose={CHUNKS}",
    )  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]  # a declared canary: caught, and diagnosed
    doc = json.loads((run.reports / "diagnosis" / "smollm2-Q2_K.json").read_text())
    probes = {p["group"]: p for p in doc["probes"]}
    assert set(probes) == {f"blk.{i}" for i in range(30)} | {"token_embd"}
    for p in probes.values():
        assert 0 < p["kld_mean"]["low"] <= p["kld_mean"]["value"] < doc["whole_kld"]["value"]
    # the groups' errors add at this loss (measured 0.98-1.03x); what is checked is that the
    # probes measure the variant's loss and nothing else: within a quarter either way
    assert 0.75 < doc["additivity"] < 1.33, doc["additivity"]
    # no probe file is left behind: each is a whole model, its score is what is kept
    assert not list((cache_root() / "tmp").glob("smollm2-Q2_K-probe-*.gguf"))
    html = (run.reports / "summary.html").read_text()
    assert "Layer sensitivity: smollm2-Q2_K" in html and "data-plot='diagnosis'" in html
    assert "| 1 | blk." in (run.reports / "summary.md").read_text()

    # another thread count, every score computed afresh: the most sensitive blocks stay on top
    ranked = sorted(probes, key=lambda g: probes[g]["kld_mean"]["value"], reverse=True)
    top, rest = ranked[:3], ranked[-3:]
    cold = results_free_cache(tmp_path)
    # one thread where the gate ran on several, two where make test pinned it to one core
    threads = "1" if available_cores() > 1 else "2"
    again = _cli(
        "--threads", threads, "--blocks", ",".join(top + rest), "--out", str(tmp_path / "again"),
        env={"QUANTGATE_CACHE": str(cold)},
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    redo = json.loads((tmp_path / "again" / "smollm2-Q2_K.json").read_text())
    reranked = [p["group"] for p in sorted(redo["probes"], key=lambda p: -p["kld_mean"]["value"])]
    assert set(reranked[:3]) == set(top), (reranked, top)
    for p in redo["probes"]:
        first = probes[p["group"]]["kld_mean"]["value"]
        assert p["kld_mean"]["value"] == pytest.approx(first, rel=0.05), p["group"]


def test_a_block_the_variant_does_not_retype_is_one_line():
    proc = _cli("--blocks", "30")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "quantgate diagnose: --blocks: blk.30 not re-typed by the variant; it re-types "
        + ", ".join(["token_embd", *(f"blk.{i}" for i in range(30))])
    )
