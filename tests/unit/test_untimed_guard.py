"""The guard behind the ``untimed`` mark (support/helpers.py): make test runs such a test
beside other work, so a child gate run of it that timed a gate fails it."""

from __future__ import annotations

import pytest

from support.helpers import check_untimed

CASES = '<testsuites><testsuite name="pytest">{}</testsuite></testsuites>'


def _junit(tmp_path, *names: str):
    (tmp_path / "junit.xml").write_text(
        CASES.format("".join(f'<testcase classname="t" name="{n}"/>' for n in names))
    )
    return tmp_path


def test_a_child_that_timed_a_gate_fails_the_untimed_test(tmp_path):
    reports = _junit(tmp_path, "test_perplexity[smollm2-Q8_0]", "test_throughput[smollm2-Q8_0-tg]")
    with pytest.raises(pytest.fail.Exception, match=r"test_throughput\[smollm2-Q8_0-tg\]"):
        check_untimed(reports)


def test_a_child_that_timed_nothing_passes(tmp_path):
    check_untimed(_junit(tmp_path, "test_perplexity[smollm2-Q8_0]", "test_footprint[smollm2-Q8_0]"))
    check_untimed(tmp_path / "no-run")  # a child that wrote no report: its own test says why
