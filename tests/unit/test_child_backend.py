"""The line a dead backend child leaves (quantgate.backends.child): its signal, where it died
by faulthandler's dump, and what to try. (The crash itself, for real: tests/e2e/
test_native_crash.py.)"""

from __future__ import annotations

import signal

from quantgate.backends.child import crash_hint, died_in, signal_name

#: what faulthandler wrote when llama.cpp's AMX path crashed here: cut short (two native
#: threads crashed at once)
CUT_SHORT = (
    "Fatal Python error: Segmentation fault\n\n"
    "Current thread 0x00007f8e1682cb80 (most recent call first):\n"
    '  File "/work/main/src/quantgate/backends/llama_cpp.py", line 141 in decode\n'
    '  File "'
)
WHOLE = (
    "Fatal Python error: Bus error\n\nCurrent thread 0x1 (most recent call first):\n"
    '  File "/venv/lib/python3.11/site-packages/llama_cpp/llama_cpp.py", line 720 in llama_decode\n'
    '  File "/venv/src/quantgate/backends/llama_cpp.py", line 141 in decode\n'
    '  File "/venv/src/quantgate/backends/llama_cpp.py", line 170 in run\n'
)


def test_the_signal_is_named_from_the_exit_code():
    assert signal_name(-signal.SIGSEGV) == "SIGSEGV"
    assert signal_name(-signal.SIGKILL) == "SIGKILL"
    assert signal_name(3) == "exit code 3"
    assert signal_name(None) == "an unknown end"


def test_where_it_died_comes_from_faulthandlers_frames():
    assert died_in(WHOLE) == "llama_decode ← quantgate/backends/llama_cpp.py:141 decode"
    assert died_in(CUT_SHORT) == "quantgate/backends/llama_cpp.py:141 decode"
    assert died_in("") == "no Python frame in the fault log"


def test_the_advice_follows_the_signal_and_the_placement():
    assert "out-of-memory killer" in crash_hint(-signal.SIGKILL, "no-amx", "llama_cpp")
    amx = crash_hint(-signal.SIGSEGV, "amx", "llama_cpp")
    assert "AMX path is known to segfault" in amx and "remove allow_amx" in amx
    other = crash_hint(-signal.SIGSEGV, "no-amx", "llama_cpp")
    assert "rerun this pair alone" in other and "fault log" in other


def test_the_backends_known_to_run_in_a_child_are_the_classes_that_do():
    """The catalogue's runs_in_child and one_per_process answer without importing llama.cpp or
    torch; they must say what the classes say (vLLM's module is left out where vLLM is not
    installed)."""
    from quantgate.backends import backend_class
    from quantgate.configuration.backend_settings import CATALOGUE

    for name, spec in CATALOGUE.items():
        try:
            cls = backend_class(name)
        except ImportError:
            continue
        assert cls.runs_in_child == spec.runs_in_child, name
        assert cls.one_per_process == spec.one_per_process, name
