"""The GPU tier, proven on CPU where it can be, in process: the lock's pins, the backends'
arguments and one engine at a time, timing that waits for the GPU, GPU counts and skip reasons."""

from __future__ import annotations

import contextlib
import os
from configparser import ConfigParser
from types import SimpleNamespace

import pytest

from quantgate.configuration.registry import load_registry
from quantgate.night import env_lock, hardware
from support.helpers import REPO


def test_the_lock_holds_vllms_own_pins_and_a_cuda_torch():
    pins = env_lock.read_lock()
    assert not env_lock.lock_problems(pins)
    assert pins["vllm"] == "0.33.0" and pins["torch"] == "2.14.0"
    assert pins["compressed-tensors"] == "0.17.0"  # vLLM's pin, not the CPU set's 0.19.0
    assert "autoawq" not in pins  # archived; transformers and vLLM load AWQ without it
    assert env_lock.lock_problems({**pins, "torch": "2.14.0+cpu"}) == [
        "torch 2.14.0+cpu is the CPU build"
    ]


def test_pip_report_parsing_and_lock_format(tmp_path):
    report = {
        "install": [
            {"metadata": {"name": "Torch_C", "version": "1.0"}},
            {"metadata": {"name": "quantgate", "version": "0.1.0"}},
        ]
    }
    assert env_lock.pins_from_report(report) == {"torch-c": "1.0"}
    lock = tmp_path / "gpu.lock"
    lock.write_text(env_lock.format_lock({"b": "2", "a": "1"}))
    assert env_lock.read_lock(lock) == {"a": "1", "b": "2"}
    lock.write_text("vllm>=0.3\n")
    with pytest.raises(ValueError, match=r"gpu\.lock: 'vllm>=0.3' is not name==version"):
        env_lock.read_lock(lock)
    env = env_lock.pip_environment()
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert not {k for k in env if k.startswith("PIP_")} - {
        "PIP_CONFIG_FILE",
        "PIP_DISABLE_PIP_VERSION_CHECK",
    }


def test_no_extra_a_gpu_machine_installs_pins_the_cpu_torch():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for role in ("hf", "gpu"):
        pinned = [r for r in extras[role] if r.startswith(("torch==", "compressed-tensors=="))]
        assert not pinned, f"extra {role} pins {pinned}"
    assert "torch==2.13.0" in extras["dev"]  # the CPU set keeps its pin
    assert any(r.startswith("vllm==") for r in extras["gpu"])
    assert not any(r.startswith("vllm") for r in extras["dev"] + extras["hf"])


def test_tox_gpu_env_installs_from_the_lock_and_rebuilds_llama_cpp_with_cuda():
    tox = ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    gpu = tox["testenv:gpu"]
    assert [e.strip() for e in gpu["extras"].split(",")] == ["hf", "gpu"]
    assert "-c {toxinidir}{/}requirements{/}gpu.lock" in gpu["install_command"]
    rebuild = gpu["commands_pre"]
    for flag in ("--force-reinstall", "--no-cache-dir", "--no-binary llama-cpp-python"):
        assert flag in rebuild
    assert "llama_supports_gpu_offload" in rebuild
    assert "CMAKE_ARGS = -DGGML_CUDA=on" in gpu["set_env"]
    assert "CUDA_*" in gpu["pass_env"]


def test_a_one_per_process_backend_evicts_the_other_before_loading(monkeypatch):
    from quantgate.backends import pool as pool_module
    from quantgate.configuration.backend_settings import BackendSettings

    loaded: list[str] = []

    class OneEngine:
        one_per_process = True
        runs_in_child = False
        deployed_memory = None

        def __init__(self, artifact, settings):
            self.label, self.settings = artifact.label, settings
            loaded.append(artifact.label)

        def close(self):
            loaded.remove(self.label)

    monkeypatch.setattr(pool_module, "backend_class", lambda name: OneEngine)
    pool = pool_module.BackendPool(max_loaded=2)
    a, b = (SimpleNamespace(label=x) for x in ("base", "variant"))
    pool.get(a, BackendSettings(), "vllm")
    pool.get(b, BackendSettings(), "vllm")
    assert loaded == ["variant"]
    pool.close()
    assert loaded == []


# -- transformers on CUDA ----------------------------------------------------------------------
def test_transformers_timing_waits_for_the_gpu_and_benchmarks_batch():
    from quantgate.backends.transformers import TransformersBackend
    from quantgate.configuration.backend_settings import TransformersSettings

    events: list[str] = []
    fake_torch = SimpleNamespace(
        get_num_threads=lambda: 2,
        set_num_threads=lambda n: None,
        no_grad=contextlib.nullcontext,
        cuda=SimpleNamespace(synchronize=lambda: events.append("synchronize")),
    )

    def model(*args, **kw):
        events.append("forward")
        return SimpleNamespace(past_key_values=None)

    backend = TransformersBackend.__new__(TransformersBackend)
    backend.settings, backend.timing_threads = TransformersSettings(device="cuda"), None
    backend._torch, backend.model, backend._ids = fake_torch, model, lambda t: t
    backend.process_prompt([1, 2])
    assert events == ["forward", "synchronize"]
    events.clear()
    backend.decode_one_by_one([1, 2, 3])
    assert events == ["forward"] * 3 + ["synchronize"]
    assert backend.lm_eval_batch_size == "auto"
    backend.settings = TransformersSettings(device="cpu")
    events.clear()
    backend.process_prompt([1])
    assert events == ["forward"] and backend.lm_eval_batch_size == 1


# -- what the machine can run ------------------------------------------------------------------
def test_gpu_count_and_skip_reason(monkeypatch):
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    big, small = registry.models["llama31_405b"], registry.models["llama31_hf"]
    assert hardware.gpus_needed(big) == 16 and hardware.gpus_needed(small) == 1
    assert hardware.gpus_needed(registry.models["smollm2"]) == 0
    assert hardware.gpu_skip_reason("llama31_405b", big, 8) == (
        "models.llama31_405b needs 16 GPU(s) (tensor_parallel_size 8 x pipeline_parallel_size"
        " 2), found 8 (QUANTGATE_GPUS sets the count a Ray cluster offers)"
    )
    assert hardware.gpu_skip_reason("llama31_hf", small, 1) is None
    monkeypatch.setenv("QUANTGATE_GPUS", "16")
    assert hardware.gpus_present() == 16
    monkeypatch.delenv("QUANTGATE_GPUS")
    monkeypatch.setattr(hardware, "_physical_gpus", lambda: 8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert hardware.gpus_present() == 2
    monkeypatch.setenv("QUANTGATE_GPUS", "many")
    with pytest.raises(ValueError, match="QUANTGATE_GPUS='many': expected the number"):
        hardware.gpus_present()


def test_the_shipped_registry_has_no_gpu_entry_without_a_gpu_count():
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    for key, entry in registry.models.items():
        if "gpu" in entry.marks or (entry.format == "gguf" and "nightly" in entry.marks):
            assert hardware.gpus_needed(entry) >= 1, key


def test_a_kernel_falling_back_to_pure_torch_is_recognised():
    import logging
    import warnings

    from quantgate.backends import transformers as tb

    said = [
        "Loading weights: 100%",
        "VPTQ: CUDA kernel not available, falling back to the torch implementation",
    ]
    assert tb.kernel_fallback(said) == said[1]
    assert tb.kernel_fallback(["gptqmodel: the extension is not compiled"]) is not None
    assert tb.kernel_fallback(["Some weights of the model were not used"]) is None
    import transformers  # noqa: F401 - its logging stops propagating to the root logger

    with tb._captured_messages() as messages:
        warnings.warn("exllama kernels are not installed: a slower implementation", stacklevel=1)
        logging.getLogger("transformers.quantizers").warning("AWQ: falls back to pure torch")
    assert len(messages) == 2 and all(tb.kernel_fallback([m]) for m in messages)


def test_a_quantized_checkpoint_without_its_library_is_one_line(tmp_path, monkeypatch):
    import importlib.util
    import json

    from quantgate.artifacts.store import Artifact
    from quantgate.backends import transformers as tb
    from quantgate.errors import ConfigError

    (tmp_path / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "awq"}})
    )
    artifact = Artifact("m-awq", tmp_path, "0" * 64, None, {})  # type: ignore[arg-type]
    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gptqmodel" else found(name)
    )
    # transformers >= 5 loads AWQ with gptqmodel's kernels: AutoAWQ is not what is missing
    with pytest.raises(
        ConfigError,
        match=r"an? awq checkpoint and gptqmodel is not installed: "
        r"pip install -c requirements/gpu\.lock",
    ):
        tb._check_checkpoint_library(artifact)


def test_a_one_per_process_backend_times_its_baseline_once_then_the_variant_alone(monkeypatch):
    from quantgate.configuration.thresholds import Thresholds
    from quantgate.evaluation import throughput_measurer
    from quantgate.evaluation.throughput import Workload
    from quantgate.session import GateSession

    class OneEngine:
        one_per_process = True

    timed: list[str] = []
    variant = SimpleNamespace(
        n_vocab=100,
        process_prompt=lambda tokens: timed.append("variant"),
        decode_one_by_one=lambda tokens: timed.append("variant"),
    )
    monkeypatch.setattr(throughput_measurer, "backend_class", lambda name: OneEngine)
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    gs = GateSession(registry, Thresholds(REPO / "thresholds", registry))
    monkeypatch.setattr(gs.loading, "variant_backend", lambda pair: variant)
    monkeypatch.setattr(
        gs.throughput,
        "baseline_workload",
        lambda model, kind: Workload(kind, 64, lambda: timed.append("baseline")),
    )
    pair = registry.pairs(["smollm2_hf"])[0]
    disabled = SimpleNamespace(disabled=True)
    first = gs.throughput.rates(pair, "pp", disabled)
    rounds = pair.evaluation.throughput.warmup_rounds + pair.evaluation.throughput.rounds
    assert timed == ["baseline"] * rounds + ["variant"] * rounds  # not interleaved
    timed.clear()
    second = gs.throughput.rates(pair, "pp", disabled)
    assert timed == ["variant"] * rounds and second.baseline == first.baseline


def test_a_one_per_process_backend_does_each_engines_work_while_it_is_loaded(monkeypatch):
    """vLLM's engines start once each: the baseline's scores, tokens/s and memory, then the
    variant's scores and memory, whichever of the pair's gates runs first; the pair's later
    gates ask nothing again (the baseline's tokens/s and memory are memos, its scores cached)."""
    from quantgate import session as session_module
    from quantgate.configuration.thresholds import Thresholds
    from quantgate.session import GateSession

    class OneEngine:
        one_per_process = True

    done: list[tuple[str, str]] = []
    monkeypatch.setattr(session_module, "backend_class", lambda name: OneEngine)
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    gs = GateSession(registry, Thresholds(REPO / "thresholds", registry))
    monkeypatch.setattr(gs.loading, "lazy_baseline", lambda model: "baseline")
    monkeypatch.setattr(gs.loading, "lazy_variant", lambda pair: pair.compression_name)
    monkeypatch.setattr(
        gs.retention,
        "benchmark",
        lambda backend, model, name: done.append((backend, f"score {name}")),
    )
    monkeypatch.setattr(
        gs.throughput,
        "baseline_rate",
        lambda model, kind: done.append(("baseline", f"time {kind}")),
    )
    monkeypatch.setattr(
        gs.footprint, "baseline_memory", lambda model: done.append(("baseline", "memory"))
    )
    monkeypatch.setattr(
        gs.footprint,
        "probe_memory",
        lambda artifact, model: done.append((artifact.label, "memory")),
    )
    monkeypatch.setattr(gs.artifacts, "variant", lambda pair: SimpleNamespace(label=pair.id))
    first = registry.pairs(["smollm2_vllm"])[0]
    benches = list(first.model.benchmarks)
    gs._use_engines_once(first)
    gs._use_engines_once(first)  # the pair's next gate: nothing again
    engines = [backend for backend, _ in done]
    # one run of each engine's work, the baseline's first
    assert engines == sorted(engines, key=lambda e: e != "baseline")
    assert [w for e, w in done if e == "baseline"] == [
        *(f"score {b}" for b in benches),
        "time pp",
        "time tg",
        "memory",
    ]
    assert [w for e, w in done if e != "baseline"] == [
        *(f"score {b}" for b in benches),
        "memory",
    ]


def test_a_one_per_process_pairs_tests_run_together_where_its_first_stood():
    """pytest interleaves the session-scoped pairs (measured: W8A8's throughput after the
    pruned pair's tests); each move between two vLLM pairs is an engine start."""
    from quantgate.plugin import _one_engine_pair_at_a_time

    registry = load_registry(REPO / "fixtures" / "models.yaml")
    w8a8, pruned = registry.pairs(["smollm2_vllm"])[:2]
    gguf = registry.pairs(["smollm2"])[0]

    def item(name, pair):
        return SimpleNamespace(name=name, callspec=SimpleNamespace(params={"pair": pair}))

    items = [
        item("a", w8a8),
        item("b", gguf),
        item("c", pruned),
        item("d", w8a8),
        item("e", gguf),
        item("f", pruned),
        SimpleNamespace(name="g"),  # no pair: a plain test
    ]
    ordered = [i.name for i in _one_engine_pair_at_a_time(items)]
    assert ordered == ["a", "d", "b", "c", "f", "e", "g"]


def test_the_vllm_engines_memory_is_its_own_processes_and_on_a_gpu_nvmls_count(monkeypatch):
    """VllmBackend._engine_memory, up to the GPU: the engine's processes are those vLLM's engine
    manager started (here this test's own process stands in for the engine core), their peak
    RSS is summed, and on a GPU their VRAM is NVML's count for those pids."""
    import os

    from quantgate.backends import vllm as vllm_module

    alive, _writer = os.pipe()  # a sentinel that stays unready while the write end is open

    class Core:
        pid = os.getpid()
        sentinel = alive

    manager = SimpleNamespace(processes=[Core()])
    llm = SimpleNamespace(
        llm_engine=SimpleNamespace(
            engine_core=SimpleNamespace(resources=SimpleNamespace(engine_manager=manager))
        )
    )
    backend = object.__new__(vllm_module.VllmBackend)
    backend.llm = llm
    prompts: list[list[int]] = []
    monkeypatch.setattr(backend, "tokenize", lambda text: list(range(40)), raising=False)
    monkeypatch.setattr(backend, "process_prompt", prompts.append, raising=False)
    assert os.getpid() in vllm_module.engine_pids(llm)
    gib = 2**30
    monkeypatch.setattr(
        vllm_module, "nvml_snapshot", lambda: ([(os.getpid(), gib), (1, 5 * gib)], {0: 9 * gib})
    )
    on_gpu = backend._engine_memory(True, {0: 3 * gib})
    assert prompts == [list(range(32))]  # the memory probe's 32-token prompt
    assert on_gpu["peak_vram_mib"] == 1024 and on_gpu["peak_rss_mib"] > 0
    assert backend._engine_memory(False, None)["peak_vram_mib"] is None
    # an engine inside this process (no engine manager): none measured here
    backend.llm = SimpleNamespace(llm_engine=SimpleNamespace(engine_core=SimpleNamespace()))
    assert backend._engine_memory(True, None) is None


def test_a_dead_engine_core_is_seen_even_after_something_else_reaped_it():
    """The engine-dies test reaped the killed core (psutil's wait) before asking: then
    Process.is_alive() still says True, and generate waited on vLLM's queue for 14 minutes.
    engine_alive reads the process's sentinel instead."""
    import multiprocessing
    import os

    from quantgate.backends.vllm import engine_alive

    core = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    core.start()
    os.waitpid(core.pid, 0)  # reaped by someone else, as psutil's wait does
    assert core.is_alive()  # what the old check asked
    resources = SimpleNamespace(engine_dead=False, engine_manager=SimpleNamespace(processes=[core]))
    llm = SimpleNamespace(
        llm_engine=SimpleNamespace(engine_core=SimpleNamespace(resources=resources))
    )
    assert not engine_alive(llm)
