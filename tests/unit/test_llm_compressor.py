"""llm-compressor as a compression method: the quantizer environment and its errors. (The real
SmolLM2 runs, FP8 passing and int4-per-channel caught, are in test_transformers_backend.py.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from quantgate import llm_compressor
from quantgate.errors import ArtifactError, ConfigError

from .helpers import REPO


def test_missing_quantizer_env_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.delenv(llm_compressor.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        llm_compressor.quantizer_python(tmp_path, "models.m.compressions.fp8")
    assert str(exc.value).startswith("models.m.compressions.fp8: method llm_compressor runs in")
    assert "make quantize-env" in str(exc.value) and "\n" not in str(exc.value)


def test_env_var_naming_no_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(llm_compressor.ENV_VAR, str(tmp_path / "nope" / "python"))
    with pytest.raises(ConfigError, match=r"QUANTGATE_QUANTIZER_PYTHON=.*nope/python is not"):
        llm_compressor.quantizer_python(tmp_path, "where")


def test_the_gate_env_is_not_a_quantizer_env():
    # the gate's own python has compressed-tensors but not llm-compressor
    with pytest.raises(ConfigError, match=r"not a quantizer environment .*make quantize-env"):
        llm_compressor.quantizer_versions(Path(sys.executable))


def test_the_quantizer_env_has_its_pinned_versions():
    python = llm_compressor.quantizer_python(REPO / "fixtures", "test")
    versions = llm_compressor.quantizer_versions(python)
    pins = dict(
        line.split("==")
        for line in (REPO / "requirements" / "quantize.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert versions["llmcompressor"] == pins["llmcompressor"]
    assert versions["compressed-tensors"] == pins["compressed-tensors"]
    # the gate reads what the quantizer writes with the same compressed-tensors
    from importlib.metadata import version

    assert version("compressed-tensors") == pins["compressed-tensors"]


@pytest.mark.child_pytest  # a child process: seconds to a minute
def test_a_failed_oneshot_names_its_log_and_leaves_no_artifact(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path / "cache"))
    python = llm_compressor.quantizer_python(REPO / "fixtures", "test")
    with pytest.raises(ArtifactError) as exc:
        llm_compressor.compress(
            "m-broken",
            tmp_path / "no-such-checkpoint",
            "0" * 64,
            [{"modifier": "QuantizationModifier", "scheme": "FP8_DYNAMIC"}],
            None,
            1,
            512,
            1234,
            python,
        )
    text = str(exc.value)
    assert text.startswith("m-broken: llm-compressor oneshot exited with 1: ")
    assert "\n" not in text and "m-broken.oneshot.log" in text
    built = [p for p in (tmp_path / "cache").rglob("m-broken*") if not p.name.endswith(".log")]
    assert [p.name for p in built if not p.name.endswith(".lock")] == []


def test_the_registry_and_the_job_know_the_same_modifiers():
    # the job runs in the quantizer env and cannot import quantgate: the two lists are kept
    # apart on purpose, and must not drift
    from quantgate.compressions.llm_compressor import LLM_COMPRESSOR_MODIFIERS
    from quantgate.llm_compressor_job import MODIFIER_MODULES

    assert set(MODIFIER_MODULES) == set(LLM_COMPRESSOR_MODIFIERS)
