"""Importance-matrix quantization on the real SmolLM2: llama.cpp's tools' errors as one line,
an imatrix Q2_K measurably better than plain Q2_K, an I-quant gated both ways."""

from __future__ import annotations

import pytest

PPL = "tests/test_perplexity.py"

# untimed: the tools and the perplexity gate only (make test runs it beside the rest)
pytestmark = pytest.mark.untimed


def _with_imatrix_text(doc, text: str) -> None:
    entry = doc["models"]["smollm2"]["compressions"]["Q4_K_M-imatrix"]
    entry["imatrix"] = {**entry["imatrix"], "calibration": text}


@pytest.mark.real_model
@pytest.mark.parametrize("text", ["missing", "short"])
def test_a_missing_or_short_calibration_text_is_a_one_line_error(
    gate_run, registry_copy, tmp_path, text
):
    calibration = tmp_path / f"{text}.txt"
    if text == "short":
        calibration.write_text("A calibration text far shorter than two chunks of 512 tokens.\n")
    registry = registry_copy(lambda doc: _with_imatrix_text(doc, str(calibration)))
    run = gate_run(
        PPL, f"--registry={registry}", "--model", "smollm2", "--compression", "Q4_K_M-imatrix"
    )
    assert run.returncode == 1
    if text == "missing":
        assert (
            "ConfigError: models.smollm2.compressions.Q4_K_M-imatrix.imatrix.calibration: "
            f"{calibration} not found" in run.output
        )
    else:  # llama-imatrix's own reason, on the error's one line
        assert "ToolError: smollm2-Q4_K_M-imatrix: llama-imatrix failed (exit 1): " in run.output
        assert "you need at least 1024 tokens for a context of 512 tokens" in run.output


@pytest.mark.real_model
def test_imatrix_variants_are_gated_both_ways_and_the_matrix_helps(gate_run):
    run = gate_run(
        PPL, "--model", "smollm2",
        "--compression", "Q2_K,Q4_K_M,Q2_K-imatrix,Q4_K_M-imatrix,IQ2_XXS-imatrix",
    )  # fmt: skip
    assert run.returncode == 0, run.output[-3000:]
    outcomes = run.outcomes()
    # a 4-bit variant with a matrix passes; the 2-bit ones are declared canaries and are
    # caught (strict xfail: a pass would fail the run)
    assert outcomes["test_perplexity[smollm2-Q4_K_M-imatrix]"] == "passed"
    assert outcomes["test_kl_divergence[smollm2-Q4_K_M-imatrix]"] == "passed"
    for pair in ("Q2_K-imatrix", "IQ2_XXS-imatrix"):
        assert outcomes[f"test_perplexity[smollm2-{pair}]"] == "xfailed", pair
        assert outcomes[f"test_kl_divergence[smollm2-{pair}]"] == "xfailed", pair
    rows = run.summary()
    for quant_type in ("Q2_K", "Q4_K_M"):
        plain, weighted = (rows[f"smollm2-{name}", "kld_mean"]
                           for name in (quant_type, f"{quant_type}-imatrix"))  # fmt: skip
        # the same type with the matrix is measurably closer to the baseline: its whole
        # interval (over chunks) lies below the plain quantization's
        assert weighted["ci_high"] < plain["ci_low"], (quant_type, weighted, plain)
        assert (
            rows[f"smollm2-{quant_type}-imatrix", "ppl_increase_pct"]["value"]
            < rows[f"smollm2-{quant_type}", "ppl_increase_pct"]["value"]
        )
    # one matrix per input: the three variants of the same baseline share it (computed once
    # from a cold cache, not at all from a warm one; each step prints a start and a done line)
    assert run.output.count("llama-imatrix over 8 chunks of wiki.test.calib.raw: done") <= 1
