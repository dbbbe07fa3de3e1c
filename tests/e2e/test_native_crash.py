"""A native crash costs one pair, not the run (quantgate.backends.child), on the real model;
and llama.cpp places the real model's weights where quantgate.llama_placement says.

The crash is real: ``QUANTGATE_CRASH_IN`` makes the child that holds smollm2-Q4_K_M dereference
a null pointer when the gate asks it for logits, a SIGSEGV in that process as llama.cpp's AMX
path gives one. The gate runs in a child pytest, as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from quantgate import llama_placement
from quantgate.artifacts.cache import results_free_cache
from quantgate.artifacts.store import Artifact
from quantgate.backends.child import CRASH_ENV, ChildBackend
from quantgate.configuration.backend_settings import LlamaCppSettings

pytestmark = pytest.mark.real_model

PAIRS = ("smollm2-Q8_0", "smollm2-Q4_K_M", "smollm2-Q2_K")


def test_a_segfault_fails_exactly_its_pair_and_a_rerun_does_only_its_work(
    gate_run, registry_copy, tmp_path
):
    # two perplexity chunks: this is about the process, not the numbers
    registry = registry_copy(lambda doc: doc["evaluation"]["perplexity"].update(max_chunks=2))
    cache = results_free_cache(tmp_path)  # every score computed, so every model is loaded
    args = ("tests/test_perplexity.py", "-m", "smoke", f"--registry={registry}")
    crashing = {"QUANTGATE_CACHE": str(cache), CRASH_ENV: "smollm2-Q4_K_M:logits"}

    run = gate_run(*args, env=crashing)
    assert run.returncode == 1, run.output[-3000:]
    assert run.outcomes() == {
        "test_perplexity[smollm2-Q8_0]": "passed",
        "test_kl_divergence[smollm2-Q8_0]": "passed",
        "test_perplexity[smollm2-Q4_K_M]": "failed",
        "test_kl_divergence[smollm2-Q4_K_M]": "failed",
        "test_perplexity[smollm2-Q2_K]": "xfailed",  # the canary, caught as ever
        "test_kl_divergence[smollm2-Q2_K]": "xfailed",
    }
    # each of the pair's tests fails with the one line: pair, signal, call, machine, advice
    lines = [line for line in run.output.splitlines() if line.startswith("E   ")]
    crashes = [line for line in lines if "BackendCrash" in line]
    assert len(crashes) == 2, lines
    for line in crashes:
        assert "smollm2-Q4_K_M: the llama_cpp backend's process died of SIGSEGV in logits()" in line
        assert "(string_at ← quantgate/backends/child.py:" in line  # faulthandler's frames
        assert "; CPU " in line and "; llama.cpp: CPU : " in line
        assert f"weights: {llama_placement.current(allow_amx=False)}" in line
        assert "rerun this pair alone" in line
    # the reports are written, with every other pair's rows
    summary = json.loads((run.reports / "summary.json").read_text())
    judged = {r["pair"] for r in summary["rows"]}
    assert judged == {"smollm2-Q8_0", "smollm2-Q2_K"}
    assert summary["machines"][""]["llama_cpp_placement"] == llama_placement.current(False)
    assert "| Q8_0 |" in (run.reports / "summary.md").read_text()

    # the rerun resumes from the cache: only the crashed pair's work is left
    rerun = gate_run(*args, env={"QUANTGATE_CACHE": str(cache)})
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert "smollm2-Q4_K_M: PPL and KLD vs smollm2-baseline" in rerun.output
    assert "smollm2-Q8_0: PPL and KLD vs" not in rerun.output
    assert "baseline log-probs" not in rerun.output


def test_llama_cpp_reports_the_placement_the_gate_chose(smollm2_artifacts):
    """The real Q2_K file (k-quants: what repacking takes on AVX2) loaded as the gate loads it,
    in a child process: no weight in an AMX buffer, repacking where llama.cpp has it."""
    _, q2_k = smollm2_artifacts
    info = llama_placement.system_info()
    expected = llama_placement.current(allow_amx=False)
    backend = ChildBackend("llama_cpp", q2_k, LlamaCppSettings())
    try:
        assert backend.placement == expected
        buffers = backend.weight_buffers
        assert "AMX" not in buffers
        assert buffers.get("CPU_Mapped", 0) > 0
        if "REPACK = 1" in info and "AVX2 = 1" in info and expected != "no-extra-buffers":
            assert buffers.get("CPU_REPACK", 0) > 0, buffers  # kept, AMX or not
        backend.process_prompt(backend.tokenize("The quick brown fox")[:8])  # and it decodes
    finally:
        backend.close()
    # the opt-in (allow_amx: true) on an AMX machine: the next test


#: a process started after this one refused AMX: it asks a child for AMX; argv: the GGUF
ALLOW_AMX_IN_A_CHILD = """
import sys
from pathlib import Path
from quantgate.artifacts.store import Artifact
from quantgate.configuration.backend_settings import LlamaCppSettings
from quantgate.backends.child import ChildBackend
ChildBackend("llama_cpp", Artifact("q2_k", Path(sys.argv[1]), "0", None),
             LlamaCppSettings(allow_amx=True))
"""


def test_a_child_that_allows_amx_gets_it_after_a_load_in_process(smollm2_artifacts):
    """A model loaded in process refuses AMX to this process and to every process started after
    it: the forkserver the children come from starts just before the refusal, so a child that
    allows AMX still gets it; a process that inherited the refusal says so, rather than report
    ``amx`` for weights placed without it (what CI saw at 9d3904a)."""
    if llama_placement.current(allow_amx=False) != "no-amx":
        pytest.skip("no AMX on this CPU or in this llama.cpp build: nothing is refused")
    _, q2_k = smollm2_artifacts
    # what loading a model in process does first (a no-op where an earlier test loaded one)
    assert llama_placement.apply(allow_amx=False) == "no-amx"
    # the opt-in does what it says: the weights go to the AMX buffer (loaded only: decoding
    # there is what crashes)
    allowed = ChildBackend("llama_cpp", q2_k, LlamaCppSettings(allow_amx=True))
    try:
        assert allowed.placement == "amx"
        assert allowed.weight_buffers.get("AMX", 0) > 0, allowed.weight_buffers
    finally:
        allowed.close()
    inherited = subprocess.run(
        [sys.executable, "-c", ALLOW_AMX_IN_A_CHILD, str(q2_k.path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert inherited.returncode == 1, inherited.stderr[-2000:]
    assert "ConfigError: allow_amx: true, but this process inherited a refusal" in inherited.stderr


def test_a_load_error_in_the_child_is_the_artifact_error_it_always_was(tmp_path):
    from quantgate.errors import ArtifactError

    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    artifact = Artifact("broken", bad, "0" * 64, None)
    with pytest.raises(ArtifactError, match=r"^broken: llama.cpp could not load "):
        ChildBackend("llama_cpp", artifact, LlamaCppSettings())
