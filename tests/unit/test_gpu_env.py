"""The GPU tier, proven on CPU where it can be: the environment resolves, the backends build
the right arguments and hold one engine at a time, timing waits for the GPU, VRAM counts the
process tree, and a machine without the GPUs an entry needs skips it before any download."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
from configparser import ConfigParser
from types import SimpleNamespace

import pytest

from quantgate import env_lock, hardware, rss_probe
from quantgate.registry import load_registry

from .helpers import REPO, collected


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


# -- the environment ---------------------------------------------------------------------------
@pytest.mark.child_pytest  # a child process: seconds to a minute
def test_the_gpu_lock_still_resolves_for_linux_x86_64_cuda():
    """Metadata only (pip's dry run reads wheel metadata from the index, no multi-GB
    download), without this machine's pip configuration (its CPU torch wheel folder)."""
    if not _index_reachable():
        pytest.skip("pypi.org is unreachable: the lock check needs the package index")
    proc = subprocess.run(
        [sys.executable, "-m", "quantgate.env_lock", "check"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resolves" in proc.stdout


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


# -- vLLM: one engine, reused by lm-eval -------------------------------------------------------
FAKE_VLLM = {
    "vllm/__init__.py": """
        BUILT = []

        class LLM:
            def __init__(self, **kw):
                if BUILT:
                    raise RuntimeError("not enough free GPU memory for a second engine")
                BUILT.append(kw)
                self.kw, self.calls = kw, []
                self.llm_engine = type("E", (), {"model_config": None})()

            def get_tokenizer(self):
                from transformers import AutoTokenizer
                return AutoTokenizer.from_pretrained(self.kw["model"])

            def reset_prefix_cache(self):
                self.calls.append("reset_prefix_cache")

            def generate(self, prompt, params, use_tqdm=False):
                self.calls.append("generate")
                return [type("O", (), {"outputs": [type("C", (), {"token_ids": [1]})()]})()]

        class SamplingParams:
            def __init__(self, **kw):
                self.kw = kw

        class TokensPrompt(dict):
            pass
        """,
    "vllm/lora/__init__.py": "",
    "vllm/lora/request.py": "class LoRARequest: pass\n",
    "vllm/tokenizers.py": """
        def get_tokenizer(name, **kw):
            from transformers import AutoTokenizer
            return AutoTokenizer.from_pretrained(name)
        """,
    "vllm/renderers/__init__.py": "",
    "vllm/renderers/hf.py": "def resolve_chat_template(**kw): return None\n",
    "vllm-0.33.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: vllm\nVersion: 0.33.0\n",
}


def test_lm_evals_vllm_model_reuses_the_backends_engine(tmp_path):
    """lm-eval's VLLM builds an engine of its own; a second one on the same GPU is refused.
    With a stand-in vllm package (the real one is GPU-only), the backend's engine is the one
    lm-eval's model scores with, built once; pp timing resets the prefix cache first."""
    for rel, text in FAKE_VLLM.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    code = textwrap.dedent(
        """
        import vllm
        from quantgate.artifacts import ArtifactStore
        from quantgate.backends.vllm import VllmBackend
        from pathlib import Path
        from quantgate.backend_settings import VllmSettings
        from quantgate.registry import load_registry
        registry = load_registry(Path("fixtures/models.yaml").resolve())
        artifact = ArtifactStore(registry).baseline("smollm2_hf")
        backend = VllmBackend(artifact, VllmSettings(n_ctx=512, dtype="auto", device="cuda"))
        lm = backend.lm_eval_model()
        assert lm.model is backend.llm, "lm-eval built its own engine"
        assert lm.batch_size == "auto", lm.batch_size
        assert len(vllm.BUILT) == 1
        import lm_eval.models.vllm_causallms as m
        assert m.LLM is vllm.LLM, "the stand-in outlived the constructor"
        backend.process_prompt([1, 2, 3])
        assert backend.llm.calls == ["reset_prefix_cache", "generate"], backend.llm.calls
        print("REUSED")
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO / 'src'}"}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0 and "REUSED" in proc.stdout, proc.stderr[-3000:]


def test_a_one_per_process_backend_evicts_the_other_before_loading(monkeypatch):
    from quantgate.backend_settings import BackendSettings
    from quantgate.backends import pool as pool_module

    loaded: list[str] = []

    class OneEngine:
        one_per_process = True

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
    from quantgate.backend_settings import TransformersSettings
    from quantgate.backends.transformers import TransformersBackend

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


# -- peak VRAM over the process tree -----------------------------------------------------------
def test_vram_counts_every_process_of_the_tree():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = rss_probe.process_tree()
        assert {os.getpid(), child.pid} <= tree
    finally:
        child.kill()
        child.wait()
    nvml = [(os.getpid(), 100), (child.pid, 4000), (999_999, 7)]  # the last: another user
    assert rss_probe.tree_vram_bytes(nvml, tree, {0: 0}, {0: 0}) == 4100
    # a container: NVML's host pids match none of ours; the devices' growth is what we held
    host = [(4242, 4100)]
    assert rss_probe.tree_vram_bytes(host, tree, {0: 5000, 1: 900}, {0: 900, 1: 900}) == 4100
    assert rss_probe.tree_vram_bytes(host, tree, {0: 5000}, None) == 0


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


def test_nightly_llama31_does_not_collect_the_405b_entry(gate_run):
    ids = collected(gate_run("--collect-only", "-q", "-m", "nightly", "--model", "llama31"))
    assert ids and not any("llama31_405b" in i for i in ids)
    assert any("llama31_hf-awq-int4" in i for i in ids)


def test_an_entry_needing_more_gpus_is_skipped_before_any_download(gate_run):
    # offline with an empty Hub cache: a download attempt would be an error, not a skip
    run = gate_run("-m", "nightly", "--model", "llama31_405b", "-rs", env={"QUANTGATE_GPUS": "8"})
    assert run.returncode == 0, run.output[-3000:]
    assert "needs 16 GPU(s) (tensor_parallel_size 8 x pipeline_parallel_size 2), found 8" in (
        run.output
    )
    assert set(run.outcomes().values()) == {"skipped"}


def test_gpu_offload_asked_of_a_cpu_llama_cpp_is_one_usage_error(gate_run):
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python can offload")
    run = gate_run("-m", "gguf", "--model", "qwen25", env={"QUANTGATE_GPUS": "1"})
    assert run.returncode == 4, run.output[-2000:]
    assert (
        "ERROR: models.qwen25: n_gpu_layers asks for GPU offload, but the installed "
        "llama-cpp-python was built without it" in run.output
    )


def test_gpu_check_script_says_no_cuda_in_one_line():
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("gpu_check: no CUDA device")


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

    from quantgate.artifacts import Artifact
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
    from quantgate import session as session_module
    from quantgate.session import GateSession
    from quantgate.thresholds import Thresholds
    from quantgate.throughput import Workload

    class OneEngine:
        one_per_process = True

    timed: list[str] = []
    variant = SimpleNamespace(
        n_vocab=100,
        process_prompt=lambda tokens: timed.append("variant"),
        decode_one_by_one=lambda tokens: timed.append("variant"),
    )
    monkeypatch.setattr(session_module, "backend_class", lambda name: OneEngine)
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    gs = GateSession(registry, Thresholds(REPO / "thresholds", registry))
    monkeypatch.setattr(gs, "variant_backend", lambda pair: variant)
    monkeypatch.setattr(
        gs,
        "baseline_workload",
        lambda model, kind: Workload(kind, 64, lambda: timed.append("baseline")),
    )
    pair = registry.pairs(["smollm2_hf"])[0]
    disabled = SimpleNamespace(disabled=True)
    first = gs.tokens_per_second(pair, "pp", disabled)
    rounds = pair.evaluation.throughput.warmup_rounds + pair.evaluation.throughput.rounds
    assert timed == ["baseline"] * rounds + ["variant"] * rounds  # not interleaved
    timed.clear()
    second = gs.tokens_per_second(pair, "pp", disabled)
    assert timed == ["variant"] * rounds and second.baseline == first.baseline
