"""The gate rules (quantgate.verdicts.gates) stay pure: a fresh interpreter imports them without any
schema or model library."""

from __future__ import annotations


def test_the_gate_rules_import_no_schema_and_no_model():
    """gates.py is the pure core: judging a number needs neither pydantic, YAML, numpy's
    model code nor a backend (a fresh interpreter shows what importing it pulls in)."""
    import subprocess
    import sys

    code = (
        "import sys, quantgate.verdicts.gates; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'yaml', 'llama_cpp', 'torch', 'lm_eval') "
        "or m in ('quantgate.configuration.registry', 'quantgate.configuration.thresholds', "
        "'quantgate.session')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
