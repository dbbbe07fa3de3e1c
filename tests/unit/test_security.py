"""Security rules the code must keep: YAML via safe_load only, no remote code, Hub files pinned."""

from __future__ import annotations

import re

import pytest

from quantgate.configuration.registry import load_registry
from quantgate.errors import ConfigError
from support.helpers import REPO

SOURCES = sorted((REPO / "src" / "quantgate").rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_unsafe_yaml_and_no_remote_code(path):
    text = path.read_text()
    # yaml.load / full_load / unsafe_load build arbitrary Python objects from a file
    assert not re.search(r"yaml\.(load|full_load|unsafe_load)\(", text)
    assert "trust_remote_code=True" not in text and '"trust_remote_code": True' not in text


def test_hub_sources_need_a_revision(registry_copy):
    def edit(doc):
        doc["models"]["llama31"]["baseline"]["source"]["hf"].pop("revision")

    with pytest.raises(ConfigError, match="revision"):
        load_registry(registry_copy(edit))


def test_registry_yaml_cannot_build_python_objects(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("marks: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_registry(bad)
