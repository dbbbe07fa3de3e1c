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

    job = _workflow()["jobs"]["gate"]
    families = job["strategy"]["matrix"]["model"]
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    assert set(families) == {"llama31", "qwen25", "gemma2"}
    assert all(registry.pairs([f]) for f in families)
    steps = {s.get("name", s.get("uses", "")): s for s in job["steps"]}
    # the previous night is another run: its id and a token, or download-artifact finds nothing
    download = steps["previous summary, for --compare"]["with"]
    assert download["run-id"] and download["github-token"]
    assert "gh run list" in steps["previous night's run"]["run"]
    # the gate stops before the job does, so the rendering and upload steps still run
    assert steps["gate"]["timeout-minutes"] < job["timeout-minutes"]
    assert (
        "python -m quantgate.summary_report reports/nightly"
        in (steps["reports of what finished"]["run"])
    )


def test_reports_render_from_the_rows_a_killed_run_wrote(tmp_path):
    import json
    import subprocess
    import sys

    from quantgate.report import write_summary

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
        [sys.executable, "-m", "quantgate.summary_report", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "smollm2" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "summary.html").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["rows"][0]["value"] == 0.4
    bad = subprocess.run(
        [sys.executable, "-m", "quantgate.summary_report", str(tmp_path / "none")],
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
