"""The night's jobs as processes: the merge job runs without any model library, reports render
from the rows a killed run wrote, and tox loads every env."""

from __future__ import annotations

import subprocess
import sys

import yaml

from support.helpers import REPO


def _workflow() -> dict:
    return yaml.safe_load((REPO / ".github" / "workflows" / "nightly-gpu.yml").read_text())


def _steps(job: dict) -> dict[str, dict]:
    return {s.get("name", s.get("uses", "")): s for s in job["steps"]}


def test_the_merge_job_needs_no_model_library(tmp_path):
    """The merge job installs quantgate without its dependencies, then only what merging
    imports: the merge must run with llama.cpp, torch, transformers, lm-eval and vLLM absent."""
    install = _steps(_workflow()["jobs"]["merge"])["install the merge"]["run"]
    assert "pip install --no-deps -e ." in install
    shard = tmp_path / "s1"
    shard.mkdir()
    (shard / "shard.json").write_text('{"shard": 1, "of": 1, "parts": [[]]}')
    (shard / "junit.xml").write_text('<testsuites><testsuite name="pytest"/></testsuites>')
    blocked = ["llama_cpp", "torch", "transformers", "lm_eval", "vllm", "datasets", "gguf"]
    code = (
        "import runpy, sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None  # import raises ImportError\n"
        f"sys.argv = ['merge', {str(tmp_path / 'out')!r}, {str(shard)!r}]\n"
        "runpy.run_module('quantgate.night.merge', run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 shard(s) merged" in proc.stdout


def test_reports_render_from_the_rows_a_killed_run_wrote(tmp_path):
    import json
    import subprocess
    import sys

    from quantgate.report.rows import write_summary

    row = {
        "model": "smollm2",
        "compression": "Q8_0",
        "pair": "smollm2-Q8_0",
        "gate": "perplexity",
        "metric": "ppl_increase_pct",
        "value": 0.4,
        "unit": "%",
        "verdict": "pass",
    }
    write_summary(tmp_path / "summary.json", [row])
    proc = subprocess.run(
        [sys.executable, "-m", "quantgate.report", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "smollm2" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "summary.html").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["rows"][0]["value"] == 0.4
    bad = subprocess.run(
        [sys.executable, "-m", "quantgate.report", str(tmp_path / "none")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "cannot render reports" in bad.stdout


def _tox_config(ini) -> subprocess.CompletedProcess:
    """tox's own reading of every env of a tox.ini (what `tox -e gpu` would load first)."""
    return subprocess.run(
        [sys.executable, "-m", "tox", "config", "-c", str(ini), "-e", "ALL"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,  # a hang guard (this tier runs at nice 19 in make test)
    )


def test_tox_loads_every_env(tmp_path):
    proc = _tox_config(REPO / "tox.ini")
    assert proc.returncode == 0 and "Fail" not in proc.stdout + proc.stderr, proc.stdout[-2000:]
    assert "[testenv:gpu]" in proc.stdout
    # the form a comma list takes once substituted into another env's list: tox refuses it
    broken = (
        (REPO / "tox.ini")
        .read_text()
        .replace(
            "pass_env =\n    QUANTGATE_CACHE\n    HF_HOME\n",
            "pass_env = QUANTGATE_CACHE, HF_HOME,\n",
        )
    )
    (tmp_path / "tox.ini").write_text(broken)
    (tmp_path / "requirements").mkdir()
    refused = _tox_config(tmp_path / "tox.ini")
    assert "pass_env values cannot contain whitespace" in refused.stdout + refused.stderr
