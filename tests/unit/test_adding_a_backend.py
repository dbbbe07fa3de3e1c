"""docs/backends.md "Adding a backend", followed: a Backend subclass in its own module (here,
this one), a settings class, and one entry in quantgate.configuration.backend_settings.CATALOGUE.
Nothing else is edited; the registry then takes ``backend: toy`` with toy's own settings, the format
lists it, cache keys carry its libraries and the gate loads its class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from quantgate.backends import backend_class
from quantgate.backends.base import Backend
from quantgate.configuration import backend_settings
from quantgate.configuration.backend_settings import BackendSettings, BackendSpec, format_backends
from quantgate.configuration.registry import load_registry
from quantgate.errors import ConfigError
from quantgate.versions import backend_versions, distribution_version


class ToySettings(BackendSettings):
    #: toy's own key
    temperature: float = 1.0


class ToyBackend(Backend):
    """A backend in the shape the gate needs (the methods are what Backend declares)."""

    name = "toy"

    @property
    def n_vocab(self) -> int:
        return 4

    @property
    def bos_token_id(self) -> int | None:
        return None

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return [len(word) % 4 for word in text.split()]

    def logits(self, tokens: Sequence[int], start: int = 0) -> np.ndarray:
        return np.zeros((len(tokens) - start, 4), dtype=np.float32)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return " ".join(map(str, tokens))

    def generate(self, prompt, max_new_tokens, stop_ids=(), stop_text=()) -> list[int]:
        return [0] * max_new_tokens

    def process_prompt(self, tokens: Sequence[int]) -> None:
        pass

    def decode_one_by_one(self, tokens: Sequence[int]) -> None:
        pass


@pytest.fixture
def toy(monkeypatch):
    spec = BackendSpec(f"{__name__}:ToyBackend", ToySettings, formats=("hf",), libraries=("numpy",))
    monkeypatch.setitem(backend_settings.CATALOGUE, "toy", spec)
    return spec


def test_a_new_backend_is_one_module_one_settings_class_and_one_catalogue_entry(toy, registry_copy):
    def use_toy(doc: dict) -> None:
        entry = doc["models"]["smollm2_hf"]
        entry["backend"] = "toy"
        entry["backend_settings"] = {"n_ctx": 512, "temperature": 0.5}

    entry = load_registry(registry_copy(use_toy)).models["smollm2_hf"]
    assert entry.backend == "toy" and entry.backend_settings == ToySettings(
        n_ctx=512, temperature=0.5
    )
    assert format_backends("hf") == ("transformers", "vllm", "toy")
    assert backend_versions("toy") == {"numpy": distribution_version("numpy")}
    assert backend_class("toy") is ToyBackend

    # its settings are its own: another backend's key is refused, naming toy's
    def wrong_key(doc: dict) -> None:
        use_toy(doc)
        doc["models"]["smollm2_hf"]["backend_settings"]["dtype"] = "float32"

    with pytest.raises(ConfigError, match=r"unknown key 'dtype'.*temperature"):
        load_registry(registry_copy(wrong_key))


def test_an_unknown_backend_is_one_line_naming_the_known_ones(toy, registry_copy):
    def misspelt(doc: dict) -> None:
        doc["models"]["smollm2_hf"]["backend"] = "toyy"

    with pytest.raises(ConfigError, match=r"unknown backend 'toyy' \(did you mean 'toy'\?\)"):
        load_registry(registry_copy(misspelt))
