"""Interruption: a real gate run killed midway keeps every benchmark it finished, and the re-run
recomputes only what was unfinished; a third run only judges cached results, and pays for no
heavy import (issue 18: it starts in seconds)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from quantgate.artifacts.cache import results_free_cache
from support.helpers import OFFLINE, REPO, gate_command

pytestmark = pytest.mark.real_model

DONE = re.compile(r"\[quantgate\] (smollm2-\S+): lm-eval (\S+) \(\d+ items\): done in")
#: what scoring needs and judging cached results does not (each costs seconds to import; the
#: top-level lm_eval and llama_cpp packages, whose versions and build key the cache, 0.05 and
#: 0.2 s, are allowed)
HEAVY = {
    "torch",
    "transformers",
    "datasets",
    "vllm",
    "accelerate",
    "lm_eval.tasks",
    "lm_eval.evaluator",
}
STARTED = re.compile(r"\[quantgate\] (smollm2-\S+): lm-eval (\S+) \(\d+ items\) \.\.\.$")


def _gate(cache, reports):
    command = gate_command(
        "tests/test_retention.py", "--model", "smollm2", "--compression", "Q8_0", reports=reports
    )
    return command, {
        **os.environ,
        **OFFLINE,
        "QUANTGATE_CACHE": str(cache),
        "PYTHONUNBUFFERED": "1",
    }


def test_killed_run_resumes_with_only_the_unfinished_work(tmp_path):
    # SIGTERM, as a CI runner or a batch scheduler stops a job: no cleanup hook runs
    # no result: nothing is finished before the first run (the built files are shared)
    cache = results_free_cache(tmp_path)
    cmd, env = _gate(cache, tmp_path / "r1")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    finished: list[tuple[str, str]] = []
    deadline = time.monotonic() + 900
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := DONE.search(line):
            finished.append((m.group(1), m.group(2)))
        # kill as soon as a second benchmark run has started: one is finished, one is not
        if STARTED.search(line) and len(finished) >= 1:
            proc.send_signal(signal.SIGTERM)
            break
        assert time.monotonic() < deadline, "the gate never got to its second benchmark"
    proc.wait(timeout=120)
    assert proc.returncode != 0  # interrupted, not a pass
    assert finished, "no benchmark finished before the kill"

    cmd, env = _gate(cache, tmp_path / "r2")
    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    recomputed = {(m.group(1), m.group(2)) for m in DONE.finditer(rerun.stdout)}
    # what finished before the kill is read from the cache, everything else is computed
    assert not recomputed & set(finished)
    assert len(recomputed) + len(finished) == 2 * 4  # baseline and Q8_0, four benchmarks each
    assert "5 passed" in rerun.stdout

    # everything is cached now: nothing is scored, and nothing that scores is imported
    probe = tmp_path / "modules.txt"
    cmd, env = _gate(cache, tmp_path / "r3")
    env["QUANTGATE_MODULES_PROBE"] = str(probe)
    cached = subprocess.run(
        [*cmd, "-p", "tests.support.modules_probe"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cached.returncode == 0, cached.stdout[-3000:]
    assert not DONE.search(cached.stdout) and "5 passed" in cached.stdout
    imported = set(probe.read_text().split())
    imported |= {m.split(".")[0] for m in imported if not m.startswith("lm_eval")}
    assert "quantgate" in imported  # the probe saw the gate's own process
    assert not imported & HEAVY, sorted(imported & HEAVY)
