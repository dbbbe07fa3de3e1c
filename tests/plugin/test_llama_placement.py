"""The AMX refusal for real, in child processes (a seccomp filter lasts as long as its process):
the kernel refuses AMX tile state after it, and a tool started through the launcher inherits it.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from quantgate import llama_placement as placement
from quantgate.night.machine import cpu_facts

pytestmark = pytest.mark.skipif(
    not placement.seccomp_available(), reason="seccomp filters exist on x86-64 Linux only"
)

ASK = "from quantgate.llama_placement import amx_permission_refused as r; print(r())"


def _python(code: str, *prefix: str) -> str:
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_after_the_filter_the_kernel_refuses_amx_and_nothing_else():
    code = (
        "import os; from quantgate import llama_placement as p; "
        "before = p.amx_permission_refused(); installed = p.refuse_amx(); "
        "print(before, installed, p.amx_permission_refused(), os.getpid() > 0)"
    )
    before, installed, after, alive = _python(code).split()
    assert (installed, after, alive) == ("True", "True", "True")
    if placement.cpu_has_amx(cpu_facts().flags):
        assert before == "False"  # this kernel grants AMX to a process that asks


def test_a_tool_started_through_the_launcher_inherits_the_refusal():
    launcher = [sys.executable, "-m", "quantgate.llama_placement", "no-amx", "--"]
    assert _python(ASK, *launcher) == "True"
    if placement.cpu_has_amx(cpu_facts().flags):
        assert _python(ASK) == "False"  # without it, granted
    assert platform.machine() in ("x86_64", "AMD64")
