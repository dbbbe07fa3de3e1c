"""The GPU tier, proven on CPU where it can be, through child processes: the lock resolves,
lm-eval's vLLM model reuses the backend's engine, VRAM counts the process tree, an entry
needing more GPUs is skipped before any download, and gpu_check.sh says "no CUDA" in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from quantgate import rss_probe
from support.helpers import REPO, collected


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
        timeout=900,  # a hang guard (this tier runs at nice 19 in make test)
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("gpu_check: no CUDA device")
