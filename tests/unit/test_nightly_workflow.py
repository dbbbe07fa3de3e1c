"""The nightly GPU gate cannot run here; what can be checked is that the workflow runs the
command the README documents, that vLLM is installed by the gpu env alone, and that the
quantizer env the llm_compressor entries need is built first."""

from __future__ import annotations

import configparser
import re

import pytest
import yaml

from .conftest import REPO

NIGHTLY = "tox -e quantize,gpu -- --model"


def _workflow() -> dict:
    return yaml.safe_load((REPO / ".github" / "workflows" / "nightly-gpu.yml").read_text())


def _tox() -> configparser.ConfigParser:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    return tox


def test_workflow_runs_the_readme_command_nightly_and_publishes_the_summary():
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    assert triggers["schedule"][0]["cron"]
    steps = workflow["jobs"]["gate"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert f'{NIGHTLY} "$MODEL"' in runs
    assert re.search(rf"`{re.escape(NIGHTLY)} llama31`", (REPO / "README.md").read_text())
    assert 'summary.md >> "$GITHUB_STEP_SUMMARY"' in runs
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "reports/"
    assert "self-hosted" in workflow["jobs"]["gate"]["runs-on"]


def test_vllm_is_installed_by_the_gpu_env_alone():
    tox = _tox()
    assert "vllm" in tox["testenv:gpu"]["deps"].split()
    for env in ("testenv", "testenv:unit", "testenv:smoke", "testenv:quantize"):
        assert "vllm" not in tox[env].get("deps", "")
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    every_dep = [*extras["dependencies"]]
    for extra in extras["optional-dependencies"].values():
        every_dep += extra
    assert not [d for d in every_dep if d.startswith("vllm")]
    assert "-m nightly" in tox["testenv:gpu"]["commands"]


def test_gpu_and_unit_envs_find_the_quantizer_env():
    tox = _tox()
    for env in ("testenv:gpu", "testenv:unit"):
        assert "QUANTGATE_QUANTIZER_PYTHON = {toxworkdir}{/}quantize" in tox[env]["set_env"]
    assert "-r requirements/quantize.txt" in tox["testenv:quantize"]["deps"]
