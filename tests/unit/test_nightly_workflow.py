"""The nightly GPU gate cannot run here; what can be checked in process is that the workflow
runs the command the README documents, that vLLM is installed by the gpu env alone, and that
the quantizer env the llm_compressor entries need is built first."""

from __future__ import annotations

import configparser
import re

import pytest
import yaml

from support.helpers import REPO

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
    assert "python -m quantgate.night.merge reports/nightly shards/*/nightly" in merge
    # the timings and --compare read the artifact the merge job uploads
    assert _steps(jobs["merge"])["actions/upload-artifact@v4"]["with"]["name"] == "reports-merged"
    for job in ("shards", "merge"):
        previous = [s for s in jobs[job]["steps"] if s.get("with", {}).get("path") == "previous"]
        assert previous[0]["with"]["name"] == "reports-merged"


def test_vllm_is_installed_by_the_gpu_env_alone():
    tox = _tox()
    assert [e.strip() for e in tox["testenv:gpu"]["extras"].split(",")] == ["hf", "gpu"]
    for env in ("testenv", "testenv:tests", "testenv:smoke", "testenv:quantize"):
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


def test_gpu_and_tests_envs_find_the_quantizer_env():
    tox = _tox()
    for env in ("testenv:gpu", "testenv:tests"):
        assert "QUANTGATE_QUANTIZER_PYTHON = {toxworkdir}{/}quantize" in tox[env]["set_env"]
    assert "-r requirements/quantize.txt" in tox["testenv:quantize"]["deps"]


def test_every_study_family_runs_and_a_timed_out_night_keeps_its_reports():
    from quantgate.configuration.registry import load_registry

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
