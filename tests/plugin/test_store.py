"""The gate refuses an unreachable store before any test (in a child pytest)."""

from __future__ import annotations


def test_the_gate_refuses_an_unreachable_store_before_any_test(gate_run):
    run = gate_run(
        "--collect-only", "-q", "-m", "smoke", "--store=s3://night/x",
        env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
             "AWS_SECRET_ACCESS_KEY": "x", "AWS_MAX_ATTEMPTS": "1"},
    )  # fmt: skip
    assert run.returncode == 4, run.output[-2000:]
    assert "store s3://night/x: cannot write a probe file" in run.output
