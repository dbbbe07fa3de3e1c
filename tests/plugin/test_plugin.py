"""The pytest plugin as users meet it, in a child pytest: options, selection by marks, usage
errors before any test (no model runs)."""

from __future__ import annotations

import re

import pytest

from support.helpers import collected


def test_help_lists_the_options_with_defaults(gate_run):
    run = gate_run("--help")
    assert run.returncode == 0
    assert "quantgate: regression gate for compressed LLMs" in run.output
    for option in (
        "--model=KEY",
        "--compression=NAME",
        "--registry=PATH",
        "--thresholds=DIR",
        "--reports-dir=DIR",
        "--threads=N",
        "--underpowered={warn,error}",
    ):
        assert option in run.output
    assert "Default: 'fixtures/models.yaml'" in run.output


def test_smoke_selects_only_the_embedded_default(gate_run):
    ids = collected(gate_run("--collect-only", "-q", "-m", "smoke"))
    # the noise floor of the model (its noise_floor_marks), shown beside every gate
    assert "tests/test_noise_floor.py::test_noise_floor[smollm2]" in ids
    pairs = [i for i in ids if "test_noise_floor" not in i]
    assert pairs and all("[smollm2-" in i for i in pairs)
    assert {re.search(r"\[smollm2-([^\]-]+)", i).group(1) for i in pairs} == {
        "Q8_0",
        "Q4_K_M",
        "Q2_K",
    }


def test_slow_tier_holds_the_other_variants_and_the_benchmark_families(gate_run):
    ids = collected(gate_run("--collect-only", "-q", "-m", "slow"))
    # GSM8K's noise floor: how many answers the baseline changes with its arithmetic perturbed
    assert "tests/test_noise_floor.py::test_noise_floor[smollm2_gsm8k]" in ids
    pairs = {
        re.search(r"\[(smollm2[^-]*-(?:pruned2-Q4_K_M|[^\]-]+(?:-imatrix|-mixed)?))", i).group(1)
        for i in ids
        if "test_noise_floor[" not in i
    }
    assert pairs == {
        "smollm2-Q6_K",
        "smollm2-Q2_K-mixed",
        "smollm2-Q3_K_M",
        "smollm2-Q2_K-imatrix",
        "smollm2-Q4_K_M-imatrix",
        "smollm2-IQ2_XXS-imatrix",
        "smollm2-pruned2",
        "smollm2-pruned2-Q4_K_M",
        "smollm2_ifeval-Q8_0",
        "smollm2_ifeval-Q2_K",
        "smollm2_agieval-Q8_0",
        "smollm2_agieval-Q2_K",
        "smollm2_gsm8k-Q8_0",
        "smollm2_gsm8k-Q2_K",
    }
    assert "tests/test_retention.py::test_retention[smollm2_ifeval-Q8_0-ifeval]" in ids


def test_gguf_with_model_selects_that_model_offline(gate_run):
    run = gate_run(
        "--collect-only", "-q", "-m", "gguf", "--model", "llama31", env={"HF_HUB_OFFLINE": "1"}
    )
    ids = collected(run)
    assert run.returncode == 0
    assert ids and all("[llama31-" in i for i in ids)
    assert any("llama31-Q4_K_M-bartowski" in i for i in ids)


def test_model_and_compression_select_exactly_one_pair(gate_run):
    ids = collected(
        gate_run(
            "--collect-only", "-q", "-m", "gguf", "--model", "smollm2", "--compression", "Q8_0"
        )
    )
    assert sorted(ids) == sorted(
        [
            "tests/test_perplexity.py::test_perplexity[smollm2-Q8_0]",
            "tests/test_perplexity.py::test_kl_divergence[smollm2-Q8_0]",
            "tests/test_throughput.py::test_throughput[smollm2-Q8_0-pp]",
            "tests/test_throughput.py::test_throughput[smollm2-Q8_0-tg]",
            "tests/test_throughput.py::test_footprint[smollm2-Q8_0]",
            "tests/test_retention.py::test_retention[smollm2-Q8_0-hellaswag]",
            "tests/test_retention.py::test_retention[smollm2-Q8_0-arc_challenge]",
            "tests/test_retention.py::test_retention[smollm2-Q8_0-truthfulqa_mc2]",
            "tests/test_retention.py::test_retention[smollm2-Q8_0-winogrande]",
            "tests/test_retention.py::test_retention_overall[smollm2-Q8_0]",
        ]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # unknown model key: a usage error listing the known ones
        (
            ("--model", "llama3"),
            "ERROR: unknown --model 'llama3' (did you mean 'llama31'?); known in",
        ),
        # unknown compression name
        (("--compression", "Q4_K"), "ERROR: unknown --compression 'Q4_K'"),
        # a missing registry file
        (("--registry", "nope.yaml"), "nope.yaml not found; pass --registry PATH"),
        # a bad --threads value is quoted
        (("--threads", "two"), "--threads: expected a positive integer, got 'two'"),
        (("--limit", "0"), "--limit: expected a positive integer, got '0'"),
        (("--limit", "5", "--baseline", "pinned"), "--limit with --baseline pinned: a pinned"),
        # an unwritable reports folder, before anything runs
        (("--reports-dir=/proc/quantgate-reports",), "--reports-dir /proc/quantgate-reports: not"),
        # --compare needs an earlier summary.json
        (("--compare=nope.json",), "--compare"),
        # a shard is K/N, and its timings an earlier summary.json
        (("--shard", "3/2"), "--shard '3/2': K must be between 1 and N"),
        (("--shard", "1/2", "--shard-timings=nope.json"), "--shard-timings"),
    ],
)
def test_bad_options_are_usage_errors(gate_run, args, message):
    run = gate_run("--collect-only", "-q", *args)
    assert run.returncode == 4, run.output
    assert message in run.output


def test_misspelt_threshold_key_is_a_usage_error(gate_run, thresholds_copy):
    tdir = thresholds_copy({"smollm2.yaml": "defaults: {kld_man: 0.1}\n"})
    run = gate_run("--collect-only", "-q", f"--thresholds={tdir}")
    assert run.returncode == 4
    assert (
        "smollm2.yaml: defaults: unknown threshold key 'kld_man' (did you mean 'kld_mean'?)"
        in run.output
    )


def test_unknown_quant_type_in_registry_is_a_usage_error(gate_run, registry_copy):
    def edit(doc):
        doc["models"]["smollm2"]["compressions"]["Q8_0"]["quant_type"] = "Q8_K_M"

    run = gate_run("--collect-only", "-q", f"--registry={registry_copy(edit)}")
    assert run.returncode == 4
    assert (
        "models.smollm2.compressions.Q8_0.quant_type: 'Q8_K_M' is not a llama.cpp quant "
        "type" in run.output
    )


def test_hub_model_offline_errors_and_never_passes(gate_run, registry_copy):
    def on_the_cpu(doc):  # the shipped entry offloads: on this machine it would be skipped
        doc["models"]["qwen25"]["backend_settings"]["n_gpu_layers"] = 0

    run = gate_run(
        "tests/test_perplexity.py::test_perplexity",
        f"--registry={registry_copy(on_the_cpu)}",
        "--model",
        "qwen25",
        "--compression",
        "Q8_0",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 1
    assert (
        "cannot fetch hf://Qwen/Qwen2.5-7B-Instruct-GGUF/qwen2.5-7b-instruct-fp16-00001-of-00004"
        ".gguf@main: "
        "HF_HUB_OFFLINE is set" in run.output
    )
    assert run.outcomes() == {"test_perplexity[qwen25-Q8_0]": "failed"}


ORDER_PROBE = """
import json, os, pytest

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):
        name = config.workerinput["workerid"] + ".json"
        with open(os.path.join(os.environ["ORDER_PROBE_DIR"], name), "w") as f:
            json.dump([item.nodeid for item in items], f)
    items[:] = []  # the order is what is probed: nothing runs
"""


def test_under_xdist_the_timed_gates_are_collected_last(gate_run, tmp_path):
    """A worker waiting for its turn to time idles while the other finishes its test: with
    the timed gates last, that wait happens once, when no untimed work is left."""
    import json

    (tmp_path / "order_probe.py").write_text(ORDER_PROBE)
    serial = collected(gate_run("--collect-only", "-q", "-m", "smoke"))
    env = {"PYTHONPATH": str(tmp_path), "ORDER_PROBE_DIR": str(tmp_path)}
    gate_run("-p", "order_probe", "-m", "smoke", "-n", "2", env=env)
    for worker in ("gw0", "gw1"):
        order = json.loads((tmp_path / f"{worker}.json").read_text())
        timed = [i for i in serial if "test_throughput[" in i]
        assert timed and order == [i for i in serial if i not in timed] + timed


def test_three_typos_in_three_places_are_one_error_before_any_test(
    gate_run, registry_copy, thresholds_copy
):
    """A compression key, a local task's metric and a threshold key, each misspelt: one usage
    error lists all three (each on its own line, naming file and key), and nothing runs."""

    def edit(doc):
        q6 = doc["models"]["smollm2"]["compressions"]["Q6_K"]
        q6["quant_typ"] = q6.pop("quant_type")
        ifeval = doc["models"]["smollm2_ifeval"]["benchmarks"]["ifeval"]
        ifeval["metric"] = "inst_level_loose_ac"

    tdir = thresholds_copy(defaults={"smollm2.yaml": {"kld_man": 0.1}})
    run = gate_run("-m", "smoke", f"--registry={registry_copy(edit)}", f"--thresholds={tdir}")
    assert run.returncode == 4, run.output[-3000:]
    assert "3 configuration problems:" in run.output
    for problem in (
        "models.smollm2.compressions.Q6_K: unknown key 'quant_typ' (did you mean 'quant_type'?)",
        "models.smollm2_ifeval.benchmarks.ifeval.metric: task ifeval_smoke has no metric "
        "'inst_level_loose_ac' (did you mean 'inst_level_loose_acc'?)",
        "smollm2.yaml: defaults: unknown threshold key 'kld_man' (did you mean 'kld_mean'?)",
    ):
        assert problem in run.output
    assert "passed" not in run.output and "lm-eval" not in run.output


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_the_selected_tests_benchmarks_are_checked_before_any_runs(
    gate_run, registry_copy, workers
):
    """After collection, for the tests that will run: an upstream task that lm-eval does not
    know, and --baseline pinned without pinned scores, are one usage error (not one error per
    test, minutes in); under xdist too, where a worker hands the error to the controller."""

    def edit(doc):
        doc["models"]["smollm2"]["benchmarks"]["hellaswag"]["task"] = "hellaswg"

    run = gate_run(
        "-m", "smoke", "-k", "retention", f"--registry={registry_copy(edit)}",
        "--baseline", "pinned", *workers,
    )  # fmt: skip
    assert run.returncode == 4, run.output[-3000:]
    assert "models.smollm2.benchmarks.hellaswag: lm-eval knows no task 'hellaswg'" in run.output
    for bench in ("arc_challenge", "truthfulqa_mc2", "winogrande"):
        assert (
            f"models.smollm2.benchmarks.{bench}: --baseline pinned, but the entry has no "
            "pinned_baseline" in run.output
        )
    assert "passed" not in run.output


GPU_PROBE = """
import json, os, pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    params = getattr(item, "callspec", None) and item.callspec.params or {}
    pair = params.get("pair")
    model = pair.model_key if pair is not None else params.get("model_key")
    path = os.path.join(os.environ["GPU_PROBE_DIR"], os.environ["PYTEST_XDIST_WORKER"])
    with open(path, "a") as f:
        f.write(json.dumps([model, os.environ.get("CUDA_VISIBLE_DEVICES")]) + "\\n")
    pytest.skip("probed")  # the placement is what is probed: nothing loads
"""


def test_each_xdist_worker_owns_its_gpus_and_a_models_tests_stay_together(gate_run, tmp_path):
    """-n 2 on a machine with two GPUs (named 5 and 7 by CUDA_VISIBLE_DEVICES, as a scheduler
    would hand them out): each worker sees only its own, set before any test imports torch,
    vLLM or llama.cpp; under --dist loadgroup every test of a model runs on one worker."""
    import json

    (tmp_path / "gpu_probe.py").write_text(GPU_PROBE)
    env = {
        "PYTHONPATH": str(tmp_path),
        "GPU_PROBE_DIR": str(tmp_path),
        "CUDA_VISIBLE_DEVICES": "5,7",
    }
    run = gate_run(
        "-p", "gpu_probe", "-m", "smoke or slow", "-k", "perplexity or retention",
        "-n", "2", "--dist", "loadgroup", env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
    seen = {
        worker: [json.loads(line) for line in (tmp_path / worker).read_text().splitlines()]
        for worker in ("gw0", "gw1")
    }
    assert {w: {gpu for _, gpu in rows} for w, rows in seen.items()} == {"gw0": {"5"}, "gw1": {"7"}}
    models = {w: {m for m, _ in rows} for w, rows in seen.items()}
    assert not models["gw0"] & models["gw1"], models  # no model on both workers
    assert models["gw0"] | models["gw1"] >= {"smollm2", "smollm2_ifeval"}
