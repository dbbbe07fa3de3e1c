"""thresholds/: precedence and validation."""

from __future__ import annotations

import pytest

from quantgate.configuration.registry import load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.errors import ConfigError
from support.helpers import REPO, with_retention_bounds


@pytest.fixture
def registry():
    return load_registry(REPO / "fixtures" / "models.yaml")


def make_dir(tmp_path, files, bounds=True):
    """A thresholds/ folder; ``bounds`` adds the D_<benchmark> bounds every benchmark needs
    to default.yaml."""
    d = tmp_path / "thresholds"
    d.mkdir()
    for name, text in files.items():
        if name == "default.yaml" and bounds:
            text = with_retention_bounds(text)
        (d / name).write_text(text)
    return d


def test_precedence_most_specific_wins(tmp_path, registry):
    d = make_dir(
        tmp_path,
        {
            "default.yaml": "defaults: {kld_mean: 1.0, kld_p99: 1.0, ppl_increase_pct: 1.0,"
            " top1_agreement_pct: 1.0}\n"
            "compressions: {Q8_0: {kld_p99: 2.0, ppl_increase_pct: 2.0,"
            " top1_agreement_pct: 2.0}}\n",
            "smollm2.yaml": "defaults: {ppl_increase_pct: 3.0, top1_agreement_pct: 3.0}\n"
            "compressions: {Q8_0: {top1_agreement_pct: 4.0}}\n",
        },
    )
    t = Thresholds(d, registry).for_pair("smollm2", "Q8_0")
    # layer 1: default.yaml defaults
    assert (t["kld_mean"].value, t["kld_mean"].origin) == (1.0, "default.yaml:defaults")
    # layer 2: default.yaml compressions.Q8_0
    assert (t["kld_p99"].value, t["kld_p99"].origin) == (2.0, "default.yaml:compressions.Q8_0")
    # layer 3: smollm2.yaml defaults beats default.yaml compressions
    assert (t["ppl_increase_pct"].value, t["ppl_increase_pct"].origin) == (
        3.0,
        "smollm2.yaml:defaults",
    )
    # layer 4: smollm2.yaml compressions.Q8_0 beats everything
    assert t["top1_agreement_pct"].value == 4.0
    # another model only sees default.yaml
    assert Thresholds(d, registry).for_pair("llama31", "Q8_0")["top1_agreement_pct"].value == 2.0


@pytest.mark.parametrize(
    ("files", "message"),
    [
        # misspelt metric key: named, suggested, valid keys listed
        (
            {"default.yaml": "defaults: {kld_maen: 0.1}\n"},
            "default.yaml: defaults: unknown threshold key 'kld_maen' "
            "(did you mean 'kld_mean'?); valid:",
        ),
        # misspelt top-level key
        (
            {"default.yaml": "default: {kld_mean: 0.1}\n"},
            "unknown key 'default' (did you mean 'defaults'?)",
        ),
        # wrong type
        (
            {"default.yaml": "defaults: {kld_mean: low}\n"},
            "default.yaml: defaults.kld_mean: expected a number, got 'low'",
        ),
        # a bool is not a number here
        ({"default.yaml": "defaults: {kld_mean: true}\n"}, "expected a number, got True"),
        # a compression name no registry entry has (would silently never apply)
        (
            {"default.yaml": "compressions: {Q8_O: {kld_mean: 0.1}}\n"},
            "compressions.Q8_O: no such compression in the registry (did you mean 'Q8_0'?)",
        ),
        # a model file for a model the registry does not know
        ({"default.yaml": "{}\n", "smolm2.yaml": "{}\n"}, "smolm2.yaml: no model 'smolm2' in"),
        # no default.yaml at all
        ({"smollm2.yaml": "{}\n"}, "default.yaml not found; pass --thresholds DIR"),
        # an infinite bound can never be breached: it would read as a pass
        ({"default.yaml": "defaults: {kld_mean: .inf}\n"}, "defaults.kld_mean: inf is no bound"),
        ({"default.yaml": "defaults: {kld_mean: {value: -.inf, mode: ci}}\n"}, "is no bound"),
        # one rule in two units in one section: the stricter copy would always decide
        (
            {"default.yaml": "defaults: {ppl_increase_pct: 10, ln_ppl_ratio: 0.05}\n"},
            "default.yaml: defaults: ppl_increase_pct and ln_ppl_ratio are one rule",
        ),
        # a bound for a metric no test of the pair measures: never judged, so never a pass
        (
            {"default.yaml": "{}\n", "smollm2.yaml": "defaults: {D_ifeval: 5}\n"},
            "smollm2.yaml: defaults.D_ifeval: models.smollm2 declares no benchmark 'ifeval'",
        ),
        (
            {"default.yaml": "{}\n", "smollm2.yaml": "compressions: {Q8_0: {peak_vram_mib: 1}}\n"},
            "smollm2.yaml: compressions.Q8_0.peak_vram_mib: smollm2-Q8_0 runs on the CPU",
        ),
        (
            {
                "default.yaml": "{}\n",
                "smollm2_ifeval.yaml": "compressions: {Q8_0: {kld_mean: 0.01}}\n",
            },
            "compressions.Q8_0.kld_mean: smollm2_ifeval-Q8_0 skips the kld gate",
        ),
    ],
)
def test_bad_threshold_files_are_one_line_errors(tmp_path, registry, files, message):
    with pytest.raises(ConfigError) as exc:
        Thresholds(make_dir(tmp_path, files), registry)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_an_empty_default_yaml_is_an_error(tmp_path, registry, text):
    with pytest.raises(ConfigError, match=r"default.yaml is empty: it holds the bounds"):
        Thresholds(make_dir(tmp_path, {"default.yaml": text}, bounds=False), registry)


def test_a_benchmark_without_a_retention_bound_is_an_error(tmp_path, registry):
    text = with_retention_bounds("defaults: {kld_mean: 0.1}\n").replace("D_winogrande", "#")
    d = make_dir(tmp_path, {"default.yaml": text}, bounds=False)
    with pytest.raises(ConfigError) as exc:
        Thresholds(d, registry)
    # one problem per model that runs winogrande, each one line naming the pairs and the file
    problems = exc.value.problems
    assert problems and all("\n" not in p for p in problems)
    smollm2 = [p for p in problems if p.startswith("smollm2-Q8_0/")]
    assert len(smollm2) == 1 and "smollm2.yaml's defaults" in smollm2[0]
    assert "benchmark winogrande has no bound: add D_winogrande to" in smollm2[0]


def test_null_leaves_a_metric_ungated_for_one_model_and_another_bound_must_then_judge(
    tmp_path, registry
):
    # smollm2 scores 0 on a benchmark: its D is undefined, so the model's file sets D to null
    # and gates the answers that changed instead
    text = with_retention_bounds("defaults: {kld_mean: 0.1}\n")
    nulled = "defaults: {D_winogrande: null, answers_changed_winogrande: {value: 60, mode: ci}}\n"
    d = make_dir(tmp_path, {"default.yaml": text, "smollm2.yaml": nulled}, bounds=False)
    t = Thresholds(d, registry)
    mine = t.for_pair("smollm2", "Q8_0")
    assert "D_winogrande" not in mine and mine["answers_changed_winogrande"].mode == "ci"
    assert "D_winogrande" in t.for_pair("smollm2_hf", "bnb-int8")  # other models keep it
    # a higher layer may bound it again
    again = nulled.replace("}\n", "}\ncompressions: {Q8_0: {D_winogrande: 4}}\n")
    (d / "smollm2.yaml").write_text(again)
    assert Thresholds(d, registry).for_pair("smollm2", "Q8_0")["D_winogrande"].value == 4
    # null with nothing else bounding the benchmark: it would judge nothing
    (d / "smollm2.yaml").write_text("defaults: {D_winogrande: null}\n")
    with pytest.raises(ConfigError) as exc:
        Thresholds(d, registry)
    assert "benchmark winogrande has no bound: add D_winogrande to" in str(exc.value)
    assert "or, where it is null, one of flips_winogrande, " in str(exc.value)
    # a misspelt key is still one, null or not
    (d / "smollm2.yaml").write_text("defaults: {D_winogrand: null}\n")
    with pytest.raises(ConfigError, match="unknown threshold key 'D_winogrand'"):
        Thresholds(d, registry)


def test_the_more_specific_of_the_two_ppl_rules_decides(tmp_path, registry):
    d = make_dir(
        tmp_path,
        {
            "default.yaml": "defaults: {ppl_increase_pct: 10}\n",
            "smollm2.yaml": "compressions: {Q8_0: {ln_ppl_ratio: {value: 0.01, mode: ci}}}\n",
        },
    )
    t = Thresholds(d, registry)
    q8 = t.for_pair("smollm2", "Q8_0")
    assert "ppl_increase_pct" not in q8 and q8["ln_ppl_ratio"].mode == "ci"
    assert t.for_pair("smollm2", "Q2_K")["ppl_increase_pct"].value == 10


def test_shipped_thresholds_are_valid(registry):
    t = Thresholds(REPO / "thresholds", registry)
    assert t.for_pair("smollm2", "Q8_0")["ppl_increase_pct"].value == 1.0


def test_a_vram_bound_is_gated_on_gpu_pairs_only(registry):
    from quantgate.configuration.backend_settings import settings_for

    def on_gpu(backend, settings):
        return settings_for(backend, settings).on_gpu

    t = Thresholds(REPO / "thresholds", registry)
    assert t.for_pair("llama31_hf", "awq-int4")["peak_vram_mib"].value == 7600
    # what decides whether the memory probe measures VRAM (tests/test_throughput.py records
    # "not measured" for a CPU pair, and gates the bound on a GPU pair)
    assert not on_gpu("llama_cpp", {"n_gpu_layers": 0})
    assert on_gpu("llama_cpp", {"n_gpu_layers": -1})
    assert not on_gpu("transformers", {"device": "cpu"})
    assert on_gpu("transformers", {"device": "cuda"}) and on_gpu("vllm", {"device": "cuda"})
