"""The GPU tier, proven on CPU where it can be, through child processes: the lock resolves,
VRAM counts the process tree, an entry
needing more GPUs is skipped before any download, and gpu_check.sh says "no CUDA" in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from quantgate.backends import rss_probe
from support.helpers import REPO, collected


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


# -- the environment ---------------------------------------------------------------------------
@pytest.mark.child_pytest  # a child process: seconds to a minute
def test_the_gpu_lock_still_resolves_for_linux_x86_64_cuda():
    """Metadata only (pip's dry run reads wheel metadata from the index, no multi-GB
    download), without this machine's pip configuration (its CPU torch wheel folder)."""
    if not _index_reachable():
        pytest.skip("pypi.org is unreachable: the lock check needs the package index")
    proc = subprocess.run(
        [sys.executable, "-m", "quantgate.night.env_lock", "check"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resolves" in proc.stdout


# -- peak VRAM over the process tree -----------------------------------------------------------
def test_vram_counts_every_process_of_the_tree():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = rss_probe.process_tree()
        assert {os.getpid(), child.pid} <= tree
    finally:
        child.kill()
        child.wait()
    nvml = [(os.getpid(), 100), (child.pid, 4000), (999_999, 7)]  # the last: another user
    assert rss_probe.tree_vram_bytes(nvml, tree, {0: 0}, {0: 0}) == 4100
    # a container: NVML's host pids match none of ours; the devices' growth is what we held
    host = [(4242, 4100)]
    assert rss_probe.tree_vram_bytes(host, tree, {0: 5000, 1: 900}, {0: 900, 1: 900}) == 4100
    assert rss_probe.tree_vram_bytes(host, tree, {0: 5000}, None) == 0


def test_nightly_llama31_does_not_collect_the_405b_entry(gate_run):
    ids = collected(gate_run("--collect-only", "-q", "-m", "nightly", "--model", "llama31"))
    assert ids and not any("llama31_405b" in i for i in ids)
    assert any("llama31_hf-awq-int4" in i for i in ids)


def test_an_entry_needing_more_gpus_is_skipped_before_any_download(gate_run):
    # offline with an empty Hub cache: a download attempt would be an error, not a skip
    run = gate_run("-m", "nightly", "--model", "llama31_405b", "-rs", env={"QUANTGATE_GPUS": "8"})
    assert run.returncode == 0, run.output[-3000:]
    assert "needs 16 GPU(s) (tensor_parallel_size 8 x pipeline_parallel_size 2), found 8" in (
        run.output
    )
    assert set(run.outcomes().values()) == {"skipped"}


def test_gpu_offload_asked_of_a_cpu_llama_cpp_is_one_usage_error(gate_run):
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python can offload")
    run = gate_run("-m", "gguf", "--model", "qwen25", env={"QUANTGATE_GPUS": "1"})
    assert run.returncode == 4, run.output[-2000:]
    assert (
        "ERROR: models.qwen25: n_gpu_layers asks for GPU offload, but the installed "
        "llama-cpp-python was built without it" in run.output
    )


def test_gpu_check_script_says_no_cuda_in_one_line():
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        timeout=900,  # a hang guard (this tier runs at nice 19 in make test)
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("gpu_check: no CUDA device")
