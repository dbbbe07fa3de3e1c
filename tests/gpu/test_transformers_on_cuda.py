"""The GPU tier's own tests: the embedded default's transformers checkpoint on CUDA. They run
where torch sees a CUDA device (the nightly machine, a lent GPU) and are skipped elsewhere with
that reason; this project's CI has no GPU, so they have not run there (docs/backends.md: "GPU-side
behaviour, and where it was verified")."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _cuda_device() -> None:
    """Skips without a CUDA device. Asked when a test runs, not at import: every pytest run
    collects tests/, and the gate's own collection must not pay torch's import."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def test_bitsandbytes_on_cuda_passes_int8_and_catches_nf4(gate_run, registry_copy):
    """The quality gates on CUDA, both ways: LLM.int8 passes perplexity and KLD, the NF4 canary
    (+28 % PPL on CPU) is caught. bitsandbytes' CUDA kernels, not the CPU fallback, compute it."""

    def on_cuda(doc):
        doc["models"]["smollm2_hf"]["backend_settings"]["device"] = "cuda"

    run = gate_run(
        f"--registry={registry_copy(on_cuda)}",
        "--model",
        "smollm2_hf",
        "-m",
        "bnb",
        "-k",
        "perplexity or kl_divergence",
    )
    assert run.returncode == 0, run.output[-3000:]
    outcomes = run.outcomes()
    for test in ("perplexity", "kl_divergence"):
        assert outcomes[f"test_{test}[smollm2_hf-bnb-int8]"] == "passed", outcomes
        assert outcomes[f"test_{test}[smollm2_hf-bnb-nf4]"] == "xfailed", outcomes
    rows = run.summary()
    assert rows["smollm2_hf-bnb-int8", "ppl_increase_pct"]["value"] < 5
