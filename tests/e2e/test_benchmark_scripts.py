"""Every script under benchmarks/ runs, at a tiny size (a few items or chunks, one round), so a
change that breaks one breaks a test that day instead of the next time someone wants its table.

Their numbers are not judged here: one round on a busy machine is noise. A script must run to
its table and exit 0, or 1 where 1 means "a target was missed" (never a Python traceback).
A new script without a line in TINY fails ``test_every_benchmark_script_has_a_tiny_run``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.helpers import OFFLINE, REPO

BENCHMARKS = REPO / "benchmarks"


@dataclass(frozen=True)
class Tiny:
    #: the arguments, as a shell would split them; {registry}: the tiny registry (the shipped
    #: one with 2 perplexity chunks), {out}: a file in the test's tmp_path
    args: str
    #: a line of the script's table (its header), which must be in its output
    table: str
    #: exit codes that are not a failure of the script (1: a missed target, at this size noise)
    exits: tuple[int, ...] = (0, 1)


TINY: dict[str, Tiny] = {
    "compare_llama_bench.py": Tiny(
        "--rounds 1 --n-gen 8 --variants Q8_0 --registry {registry}", "| artifact "
    ),
    "compare_llama_perplexity.py": Tiny("--variants Q8_0 --registry {registry}", "| metric "),
    "kld_store_error.py": Tiny(
        "--variants Q8_0 --sizes 32:0 --registry {registry}", "| variant | k:m"
    ),
    "perturbations.py": Tiny(
        "--quick --first 1 --max-chunks 2 -k 'test_perplexity and Q8_0'", "| test"
    ),
    "scoring_speed.py": Tiny("--items 2 --repeats 1 --registry {registry}", "| work | quantgate"),
    "sequential_hellaswag.py": Tiny(
        "--variants Q8_0 --limit 20 --batch 10 --orders 5 --registry {registry} --out {out}",
        "| variant",
    ),
    "sequential_null.py": Tiny("--runs 100 --orders 10", "| batch | runs", (0,)),
    "sequential_wikitext.py": Tiny(
        "--variants Q8_0 --max-chunks 8 --batch 4 --orders 5 --registry {registry} --out {out}",
        "| variant",
    ),
    "xdist_speedup.py": Tiny("-k 'test_footprint and Q8_0' --states cold", "| workers | cache"),
    # no CUDA device here: its first step says so in one line and exits 0
    "gpu_check.sh": Tiny("", "gpu_check: no CUDA device", (0,)),
}
#: scripts another test already runs for real, and which test
RUN_ELSEWHERE = {"night_cost.py": "tests/plugin/test_night_cost.py"}


def _scripts() -> list[str]:
    """The scripts (a module the scripts import, such as llama_reference.py, runs nothing)."""
    return sorted(
        p.name
        for p in BENCHMARKS.iterdir()
        if p.suffix == ".sh" or (p.suffix == ".py" and "__main__" in p.read_text())
    )


def test_every_benchmark_script_has_a_tiny_run():
    missing = [s for s in _scripts() if s not in TINY and s not in RUN_ELSEWHERE]
    assert not missing, f"add a tiny invocation to TINY in {__file__} for: {', '.join(missing)}"
    for script, test in RUN_ELSEWHERE.items():
        assert f'"{script}"' in (REPO / test).read_text(), f"{test} no longer runs {script}"


@pytest.fixture(scope="module")
def tiny_registry(tmp_path_factory) -> Path:
    """The shipped registry with 2 perplexity chunks instead of the excerpt's 13."""
    import yaml
    from benchmarks.registry_copy import with_absolute_paths

    fixtures = REPO / "fixtures"
    doc = with_absolute_paths(yaml.safe_load((fixtures / "models.yaml").read_text()), fixtures)
    doc["evaluation"]["perplexity"]["max_chunks"] = 2
    path = tmp_path_factory.mktemp("tiny") / "models.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("script", sorted(TINY))
def test_the_script_runs_at_a_tiny_size(script, tiny_registry, tmp_path):
    tiny = TINY[script]
    out = tmp_path / "out.json"
    args = [a.format(registry=tiny_registry, out=out) for a in shlex.split(tiny.args)]
    runner = ["bash"] if script.endswith(".sh") else [sys.executable]
    env = {**os.environ, **OFFLINE, "PYTHON": sys.executable}
    proc = subprocess.run(
        [*runner, str(BENCHMARKS / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    assert "Traceback (most recent call last)" not in output, output[-4000:]
    assert proc.returncode in tiny.exits, f"exit {proc.returncode}:\n{output[-4000:]}"
    assert tiny.table in output, f"no table ({tiny.table!r}) in:\n{output[-4000:]}"
