"""The nightly GPU gate cannot run here; what can be checked is that the workflow runs the
command the README documents, that vLLM is installed by the gpu env alone, and that the
quantizer env the llm_compressor entries need is built first."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys

import pytest
import yaml

from .helpers import REPO

NIGHTLY = "tox -e quantize,gpu -- --model"


def _workflow() -> dict:
    return yaml.safe_load((REPO / ".github" / "workflows" / "nightly-gpu.yml").read_text())


def _tox() -> configparser.ConfigParser:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    return tox


def _steps(job: dict) -> dict[str, dict]:
    return {s.get("name", s.get("uses", "")): s for s in job["steps"]}


def test_workflow_runs_the_readme_command_nightly_and_publishes_the_summary():
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    assert triggers["schedule"][0]["cron"]
    shards, merge = workflow["jobs"]["shards"], workflow["jobs"]["merge"]
    gate = _steps(shards)["gate"]["run"]
    assert 'tox -e quantize,gpu -- $MODEL --shard "$SHARD/$SHARDS"' in gate
    assert re.search(rf"`{re.escape(NIGHTLY)} llama31`", (REPO / "README.md").read_text())
    assert 'summary.md >> "$GITHUB_STEP_SUMMARY"' in _steps(merge)["step summary"]["run"]
    for job in (shards, merge):
        uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload")]
        assert uploads and uploads[0]["with"]["path"] == "reports/"
    assert "self-hosted" in shards["runs-on"]


def test_the_night_is_baselines_then_shards_then_one_merge():
    workflow = _workflow()
    jobs = workflow["jobs"]
    assert list(jobs) == ["baselines", "shards", "merge"]
    assert jobs["shards"]["needs"] == "baselines" and jobs["merge"]["needs"] == "shards"
    # a failed job upstream still lets the rest judge and report (the merge names what is lost)
    assert all("!cancelled()" in jobs[j]["if"] for j in ("shards", "merge"))
    # stage 1: the baselines test, which no -m tier selects, one job per model
    baselines = _steps(jobs["baselines"])["baselines"]["run"]
    assert 'pytest tests/test_baselines.py --model "$MODEL"' in baselines
    # stage 2: the matrix is the N of --shard K/N
    shards = jobs["shards"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, int(workflow["env"]["SHARDS"]) + 1))
    assert jobs["shards"]["env"]["SHARD"] == "${{ matrix.shard }}"
    assert "--shard-timings=previous/nightly/summary.json" in _steps(jobs["shards"])["gate"]["run"]
    assert "-n $GPUS --dist loadgroup" in _steps(jobs["shards"])["gate"]["run"]
    # every job reads and writes the one store the repository names
    assert workflow["env"]["QUANTGATE_STORE"] == "${{ vars.QUANTGATE_STORE }}"
    # stage 3: what each shard uploads is what the merge downloads and joins
    upload = _steps(jobs["shards"])["actions/upload-artifact@v4"]["with"]["name"]
    download = [
        s["with"] for s in jobs["merge"]["steps"] if s.get("with", {}).get("path") == "shards"
    ]
    assert download and upload.startswith(download[0]["pattern"].rstrip("*"))
    merge = _steps(jobs["merge"])["merge"]["run"]
    assert "python -m quantgate.merge reports/nightly shards/*/nightly" in merge
    # the timings and --compare read the artifact the merge job uploads
    assert _steps(jobs["merge"])["actions/upload-artifact@v4"]["with"]["name"] == "reports-merged"
    for job in ("shards", "merge"):
        previous = [s for s in jobs[job]["steps"] if s.get("with", {}).get("path") == "previous"]
        assert previous[0]["with"]["name"] == "reports-merged"


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
        "runpy.run_module('quantgate.merge', run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 shard(s) merged" in proc.stdout


def test_vllm_is_installed_by_the_gpu_env_alone():
    tox = _tox()
    assert [e.strip() for e in tox["testenv:gpu"]["extras"].split(",")] == ["hf", "gpu"]
    for env in ("testenv", "testenv:unit", "testenv:smoke", "testenv:quantize"):
        assert "vllm" not in tox[env].get("deps", "")
        assert "gpu" not in tox[env].get("extras", "")
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    # only the gpu extra names vLLM; the CPU set (dev, what CI installs) reaches it by no path
    holders = [k for k, deps in extras.items() if any(d.startswith("vllm") for d in deps)]
    assert holders == ["gpu"]
    assert not [d for d in project["dependencies"] if d.startswith("vllm")]
    assert not [d for d in extras["dev"] if "gpu" in d]
    assert "-m nightly" in tox["testenv:gpu"]["commands"]


def test_gpu_and_unit_envs_find_the_quantizer_env():
    tox = _tox()
    for env in ("testenv:gpu", "testenv:unit"):
        assert "QUANTGATE_QUANTIZER_PYTHON = {toxworkdir}{/}quantize" in tox[env]["set_env"]
    assert "-r requirements/quantize.txt" in tox["testenv:quantize"]["deps"]


def test_every_study_family_runs_and_a_timed_out_night_keeps_its_reports():
    from quantgate.registry import load_registry

    jobs = _workflow()["jobs"]
    families = jobs["baselines"]["strategy"]["matrix"]["model"]
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    assert set(families) == {"llama31", "qwen25", "gemma2", "llama2"}
    assert all(registry.pairs([f]) for f in families)
    steps = _steps(jobs["shards"])
    # the previous night is another run: its id and a token, or download-artifact finds nothing
    download = steps["previous summary, for the shard timings"]["with"]
    assert download["run-id"] and download["github-token"]
    assert "gh run list" in steps["previous night's run"]["run"]
    # the gate stops before the job does, so the upload step still runs
    assert steps["gate"]["timeout-minutes"] < jobs["shards"]["timeout-minutes"]
    assert steps["actions/upload-artifact@v4"]["if"] == "always()"


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
        timeout=120,
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
