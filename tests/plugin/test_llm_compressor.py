"""llm-compressor through child processes: the quantizer env has its pins, the gate's env is
refused as a quantizer env, and a failed oneshot names its log and leaves no artifact."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from quantgate.artifacts import llm_compressor_runner as llm_compressor
from quantgate.errors import ArtifactError, ConfigError
from support.helpers import REPO


def test_the_quantizer_env_has_its_pinned_versions():
    # runs the quantizer env's python: this tier's, which make test builds it for
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


def test_the_gate_env_is_not_a_quantizer_env():
    # the gate's own python has compressed-tensors but not llm-compressor
    with pytest.raises(ConfigError, match=r"not a quantizer environment .*make quantize-env"):
        llm_compressor.quantizer_versions(Path(sys.executable))


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
