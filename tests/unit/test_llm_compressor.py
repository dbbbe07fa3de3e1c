"""llm-compressor as a compression method: the quantizer environment's errors, and the
modifiers the registry and the job know. (The real SmolLM2 runs are in
tests/e2e/test_transformers_backend.py.)"""

from __future__ import annotations

import pytest

from quantgate.artifacts import llm_compressor_runner as llm_compressor
from quantgate.errors import ConfigError


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


def test_the_registry_and_the_job_know_the_same_modifiers():
    # the job runs in the quantizer env and cannot import quantgate: the two lists are kept
    # apart on purpose, and must not drift
    from quantgate.artifacts.compressions.llm_compressor import LLM_COMPRESSOR_MODIFIERS
    from quantgate.artifacts.llm_compressor_job import MODIFIER_MODULES

    assert set(MODIFIER_MODULES) == set(LLM_COMPRESSOR_MODIFIERS)
