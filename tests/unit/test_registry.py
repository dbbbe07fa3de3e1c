"""Registry schema: fixtures/models.yaml as shipped, and every way an entry can be wrong."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from quantgate.configuration.registry import load_registry
from quantgate.errors import ConfigError
from support.helpers import REPO


def write(tmp_path, doc) -> object:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return path


def shipped() -> dict:
    return yaml.safe_load((REPO / "fixtures" / "models.yaml").read_text())


def test_shipped_registry_loads_with_ids_and_marks():
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    pairs = {p.id: p for p in registry.pairs()}
    assert "smollm2-Q8_0" in pairs and "llama31-Q4_K_M" in pairs
    assert pairs["smollm2-Q8_0"].marks == ["gguf", "smoke"]
    assert pairs["smollm2-Q2_K"].marks == ["gguf", "smoke", "canary"]
    assert pairs["smollm2-Q2_K"].is_canary_for("perplexity")
    assert not pairs["smollm2-Q2_K"].is_canary_for("throughput")
    assert not pairs["smollm2-Q8_0"].is_canary_for("perplexity")


def test_selection_by_model_and_compression():
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    assert [p.id for p in registry.pairs(["smollm2"], ["Q8_0"])] == ["smollm2-Q8_0"]
    # a family name selects the model's GGUF entry and its transformers entries; the 405B
    # entry (16 GPUs) is a family of its own
    assert {p.model_key for p in registry.pairs(["llama31"])} == {
        "llama31",
        "llama31_hf",
        "llama31_base_hf",
    }
    assert {p.model_key for p in registry.pairs(["llama31_405b"])} == {"llama31_405b"}
    assert {p.model_key for p in registry.pairs(["llama31_hf"])} == {"llama31_hf"}


@pytest.mark.parametrize(
    ("option", "bad", "expected"),
    [
        # a typo in --model suggests the close key and lists the known ones
        ("models", "smolm2", "unknown --model 'smolm2' (did you mean 'smollm2'?); known in"),
        # a typo in --compression does the same for compression names
        ("compressions", "Q8_O", "unknown --compression 'Q8_O' (did you mean 'Q8_0'?)"),
    ],
)
def test_unknown_selection_names_the_known_ones(option, bad, expected):
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    with pytest.raises(ConfigError, match=r"^" + re.escape(expected)):
        registry.pairs(**{option: [bad]})


def _edit(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_DELETE = object()
Q8 = ("models", "smollm2", "compressions", "Q8_0")
FP8 = ("models", "smollm2_hf", "compressions", "llmc-fp8-dynamic")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        # unknown key in a compression: named, with the valid keys and a suggestion
        (
            (*Q8, "quant_typ"),
            "Q8_0",
            "models.smollm2.compressions.Q8_0: unknown key 'quant_typ' "
            "(did you mean 'quant_type'?); valid keys:",
        ),
        # unknown quant type: lists the valid llama.cpp names
        (
            (*Q8, "quant_type"),
            "Q9_0",
            "models.smollm2.compressions.Q8_0.quant_type: 'Q9_0' is not a llama.cpp quant type",
        ),
        # a required field missing
        (
            ("models", "smollm2", "format"),
            _DELETE,
            "models.smollm2.format: required key is missing",
        ),
        # a source with two kinds at once
        (
            ("models", "smollm2", "baseline", "source", "path"),
            "x.gguf",
            "a source needs exactly one of pypi_wheel, path, hf",
        ),
        # an unknown gate in expect_fail_on
        (
            ("models", "smollm2", "compressions", "Q2_K", "expect_fail_on"),
            ["perplexty"],
            "unknown gate 'perplexty' (did you mean 'perplexity'?)",
        ),
        # a mark nobody declared (strict markers would reject it later, with less context)
        (
            (*Q8, "marks"),
            ["smok"],
            "mark 'smok' is not declared under marks: (did you mean 'smoke'?)",
        ),
        # a bad sha256
        (
            ("models", "smollm2", "baseline", "source", "sha256"),
            "abc",
            "String should match pattern",
        ),
        # prebuilt with llama_quantize's keys: each method takes its own keys (and lists them)
        (
            (*Q8, "method"),
            "prebuilt",
            "compressions.Q8_0: unknown key 'quant_type'; valid keys: base, description, expect,"
            " expect_fail_on, marks, method, skip, source",
        ),
        # a misspelt method: the known ones, and the close one
        (
            (*Q8, "method"),
            "llama_quantise",
            "compressions.Q8_0: method: unknown method 'llama_quantise' (did you mean "
            "'llama_quantize'?); known: llama_quantize, llm_compressor, load_quantized, prebuilt,"
            " prune_blocks",
        ),
        # each backend takes its own settings: llama.cpp has no dtype (transformers' and vLLM's)
        (
            ("models", "smollm2", "backend_settings", "dtype"),
            "float16",
            "models.smollm2.backend_settings: unknown key 'dtype'; valid keys: allow_amx, "
            "kv_cache_type, n_batch, n_ctx, n_gpu_layers, n_threads, seed",
        ),
        # a load-time library transformers has no config for here
        (
            ("models", "smollm2_hf", "compressions", "bnb-int8", "quantization", "library"),
            "bitsandbites",
            "bnb-int8.quantization: library: 'bitsandbites' is not one of bitsandbytes, quanto"
            " (did you mean 'bitsandbytes'?)",
        ),
        # an llm-compressor modifier misspelt: the known ones, and the close one
        (
            (*FP8, "recipe"),
            [{"modifier": "GPTQModifer", "scheme": "W4A16"}],
            "recipe[0].modifier: 'GPTQModifer' is not one of QuantizationModifier, GPTQModifier,"
            " AWQModifier, SmoothQuantModifier, SparseGPTModifier, WandaPruningModifier (did you"
            " mean 'GPTQModifier'?)",
        ),
        # a calibrated modifier with no calibration text
        (
            (*FP8, "recipe"),
            [{"modifier": "GPTQModifier", "scheme": "W4A16"}],
            "recipe[0]: GPTQModifier needs a calibration text",
        ),
        # llm_compressor on a GGUF model: the methods that format takes
        (
            Q8,
            {"method": "llm_compressor", "recipe": [{"modifier": "QuantizationModifier"}]},
            "compressions.Q8_0: method llm_compressor does not apply to format gguf",
        ),
    ],
)
def test_schema_errors_are_one_line_and_name_the_entry(tmp_path, path, value, message):
    path_file = write(tmp_path, _edit(shipped(), path, value))
    with pytest.raises(ConfigError) as exc:
        load_registry(path_file)
    # every problem is one line naming the file (an edit to a shared YAML anchor is two)
    problems = exc.value.problems
    assert all("\n" not in p and p.startswith(str(path_file)) for p in problems)
    assert message in problems[0]


def test_yaml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"models\.yaml:3: invalid YAML"):
        load_registry(write(tmp_path, "marks: {}\nmodels: [unclosed\n"))


def test_missing_registry_file(tmp_path):
    with pytest.raises(ConfigError, match="not found; pass --registry PATH"):
        load_registry(tmp_path / "nope.yaml")


def test_relative_paths_resolve_next_to_the_registry(tmp_path):
    registry = load_registry(write(tmp_path, shipped()))
    assert registry.resolve("data/x.raw") == tmp_path / "data" / "x.raw"


def test_vptq_ids_are_ones_the_publisher_lists():
    # VPTQ-community's checkpoints of Llama-3.1-8B-Instruct, as microsoft/VPTQ's README lists
    # them (the Hub is not reachable from this machine's tests)
    published = {
        f"VPTQ-community/Meta-Llama-3.1-8B-Instruct-{v}-woft"
        for v in ("v8-k65536-65536", "v8-k65536-4096", "v8-k65536-256", "v12-k65536-4096")
    }
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    ids = {
        c.source.hf.repo
        for m in registry.models.values()
        for c in m.compressions.values()
        if c.method == "prebuilt" and c.source.hf is not None and "VPTQ" in c.source.hf.repo
    }
    assert ids and ids <= published


def test_limit_caps_every_benchmark_and_replaces_a_fraction():
    """--limit N: the quick tier of a study's sets (the first N items of each task); a smaller
    limit of the registry's stays, a seeded fraction gives way, the file's registry is kept."""
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    quick = registry.with_limit(30)
    smoke = quick.models["smollm2"].benchmarks
    assert smoke["hellaswag"].limit == 30  # 40 in the registry
    assert smoke["truthfulqa_mc2"].limit == 25  # already under 30
    study_b = quick.models["llama2_7b_hf"].benchmarks["mmlu"]
    assert (study_b.limit, study_b.fraction) == (30, None)
    assert all(
        b.limit is not None and b.limit <= 30
        for entry in quick.models.values()
        for b in entry.benchmarks.values()
    )
    # the pairs and everything else are the registry's own; the loaded one is untouched
    assert [p.id for p in quick.pairs()] == [p.id for p in registry.pairs()]
    assert registry.models["smollm2"].benchmarks["hellaswag"].limit == 40
    assert registry.models["llama2_7b_hf"].benchmarks["mmlu"].fraction == 0.5


def test_a_new_compression_method_is_one_class_the_registry_then_accepts(tmp_path):
    """docs/selecting-and-adding.md "Adding a compression method", followed: a Compression subclass
    registers its ``method``; the registry then validates its keys and formats, and nothing else
    changed."""
    from typing import ClassVar, Literal

    from pydantic import Field

    from quantgate.artifacts.compressions import Compression, methods_for

    class Halve(Compression):
        method: Literal["halve_for_test"]
        strength: int = Field(ge=1)
        formats: ClassVar[tuple[str, ...]] = ("gguf",)

        def build(self, store, pair, src):
            return store.checked(pair.id, src.path, dict(src.notes))

    try:
        assert "halve_for_test" in methods_for("gguf") and "halve_for_test" not in methods_for("hf")
        entry = {"method": "halve_for_test", "strength": 2, "base": "Q8_0"}
        registry = load_registry(write(tmp_path, _edit(shipped(), (*Q8[:3], "half"), entry)))
        half = registry.pair("smollm2", "half").compression
        assert isinstance(half, Halve) and half.strength == 2 and half.base == "Q8_0"
        for path, value, message in [
            ((*Q8[:3], "half"), entry | {"strength": 0}, "half.strength: Input should be"),
            ((*Q8[:3], "half"), entry | {"strenght": 2}, "unknown key 'strenght'"),
            (
                ("models", "smollm2_hf", "compressions", "half"),
                entry | {"base": None},
                "method halve_for_test does not apply to format hf",
            ),
        ]:
            with pytest.raises(ConfigError, match=re.escape(message)):
                load_registry(write(tmp_path, _edit(shipped(), path, value)))
    finally:
        del Compression.methods["halve_for_test"]


def test_a_new_backend_setting_is_one_field_the_registry_then_accepts(tmp_path, monkeypatch):
    """docs/selecting-and-adding.md "Adding a backend setting", followed: a field (with a default)
    on that backend's settings class. The registry then takes the key for that backend's entries
    only, and the cache key changes with its value, so a result made under another value is never
    reused."""
    from quantgate.configuration import backend_settings

    class WithRopeScale(backend_settings.LlamaCppSettings):
        #: the new setting (llama.cpp's rope_freq_scale)
        rope_freq_scale: float = 1.0

    llama_cpp = backend_settings.CATALOGUE["llama_cpp"]
    monkeypatch.setitem(
        backend_settings.CATALOGUE,
        "llama_cpp",
        dataclasses.replace(llama_cpp, settings=WithRopeScale),
    )
    settings = ("models", "smollm2", "backend_settings")
    doc = _edit(shipped(), settings, {"n_ctx": 512, "n_batch": 512, "rope_freq_scale": 0.5})
    entry = load_registry(write(tmp_path, doc)).models["smollm2"]
    assert isinstance(entry.backend_settings, WithRopeScale)
    assert entry.backend_settings.rope_freq_scale == 0.5
    flat = backend_settings.flat_settings
    assert flat(entry.backend_settings) != flat(WithRopeScale(n_ctx=512, n_batch=512))
    # another backend's entry does not take it
    other = _edit(shipped(), ("models", "smollm2_hf", "backend_settings"), {"rope_freq_scale": 1})
    with pytest.raises(ConfigError, match="rope_freq_scale"):
        load_registry(write(tmp_path, other))
