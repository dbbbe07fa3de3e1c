"""Where llama.cpp puts a GGUF's weights on this CPU, and keeping them off its AMX path.

llama.cpp built for a CPU with AMX (Intel Sapphire Rapids and later: ``amx_int8`` among the
CPU's flags, ``AMX_INT8 = 1`` in llama.cpp's system info) moves the weights its AMX kernels take
into an ``AMX`` buffer at load. With llama-cpp-python 0.3.36 the first decode then segfaults in
``ggml_backend_amx_mul_mat`` (reproduced on an Intel Xeon, KVM, CPU model 167, kernel 6.18, with
1 and 2 threads; llama.cpp issue "Misc. bug: segfault in ggml_backend_amx_mul_mat", closed as
stale; pull request "ggml-cpu/amx: request XFD XTILEDATA permission per thread ..." open).

ggml takes that path only if the kernel grants the process AMX tile state: ``ggml_amx_init``
asks with ``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`` and, when refused, prints
"AMX is not ready to be used!" and places every weight as on a CPU without AMX, weight
repacking (``CPU_REPACK``) included. So quantgate refuses that one request, with a seccomp
filter installed before the first model loads: everything else llama.cpp does on the CPU stays.
llama.cpp's own switch, ``use_extra_bufts = false`` (``--no-repack``), would also keep weights
off AMX, but it turns repacking off too, so throughput would not be what llama.cpp users get,
and the tools' command lines cannot say "repack, but not AMX"; the filter reaches
llama-bench, llama-perplexity and llama-imatrix the same way (:func:`tool_command`).

A filter lasts as long as its process, is inherited by its children, and refuses AMX tile
state to everything in the process (torch's oneDNN falls back to AVX-512 too). The gate loads
every llama.cpp model in a child process of its own (quantgate.backends.child), so the pytest
process itself is never filtered; a model loaded in process (tests, benchmarks, lm-eval's CLI)
filters that process, and the children's forkserver starts just before (:func:`before_refusal`),
so a child that allows AMX still gets it. ``allow_amx: true`` in an entry's ``backend_settings``
opts in.

Placements (what :func:`choose` returns, what reports and cache keys name):

* ``default``: no AMX in this CPU or in this llama.cpp build: llama.cpp's own placement.
* ``no-amx``: an AMX CPU and build, AMX refused: placed as on a CPU without AMX.
* ``amx``: an AMX CPU and build, ``allow_amx: true``: llama.cpp's AMX buffer (known to crash).
* ``no-extra-buffers``: an AMX CPU and build where a seccomp filter cannot be installed: extra
  buffer types off (``use_extra_bufts = false``): no AMX and no repacking.

Usage as a launcher (what :func:`tool_command` builds)::

    python -m quantgate.llama_placement no-amx -- llama-bench -m model.gguf
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Literal

from quantgate.errors import ConfigError
from quantgate.night.machine import cpu_facts

Placement = Literal["default", "no-amx", "amx", "no-extra-buffers"]
PLACEMENTS: tuple[Placement, ...] = ("default", "no-amx", "amx", "no-extra-buffers")

#: what a model's result keys say when nothing differs from llama.cpp's own placement
DEFAULT: Placement = "default"

#: the CPU flags (Linux /proc/cpuinfo names) of the tile instructions ggml's AMX kernels use
AMX_FLAGS = frozenset({"amx_tile", "amx_int8"})


def cpu_has_amx(flags: Iterable[str]) -> bool:
    return set(flags) >= AMX_FLAGS


def build_has_amx(system_info: str) -> bool:
    """Whether llama.cpp was compiled with its AMX kernels (``AMX_INT8 = 1`` in its system
    info line; a native build on an AMX CPU has them, a generic or AMD build does not)."""
    return "AMX_INT8 = 1" in system_info


def choose(
    cpu_flags: Iterable[str], system_info: str, allow_amx: bool, can_refuse: bool = True
) -> Placement:
    """The placement llama.cpp's weights get: see the module's docstring."""
    if not (cpu_has_amx(cpu_flags) and build_has_amx(system_info)):
        return "default"
    if allow_amx:
        return "amx"
    return "no-amx" if can_refuse else "no-extra-buffers"


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux names them (empty where /proc/cpuinfo is absent)."""
    return frozenset(cpu_facts().flags)


@cache
def system_info() -> str:
    """llama.cpp's system info line (its compiled CPU features)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return (info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)).strip()


def machine_facts() -> dict[str, str]:
    """llama.cpp's part of the machine record (quantgate.night.machine): its system info line and
    where it places the weights of an entry without ``allow_amx``."""
    return {
        "llama_cpp_system_info": system_info(),
        "llama_cpp_placement": current(allow_amx=False),
    }


def seccomp_available() -> bool:
    """Whether this kernel takes seccomp filters (``Seccomp_filters:`` in /proc/self/status,
    Linux 5.9+; AMX needs 5.16+) and this is x86-64 Linux, the only place AMX exists."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("Seccomp_filters:") for line in f)
    except OSError:
        return False


def current(allow_amx: bool) -> Placement:
    """The placement a model loaded with ``allow_amx`` gets on this machine."""
    return choose(cpu_flags(), system_info(), allow_amx, seccomp_available())


# -- in this process ------------------------------------------------------------------------------
#: the placement this process took at its first model load (AMX state cannot be undone)
_applied: Placement | None = None
#: called once, just before this process installs the filter: what must start unfiltered
_before_refusal: list[Callable[[], None]] = []


def before_refusal(hook: Callable[[], None]) -> None:
    """Call ``hook`` just before this process refuses AMX, if it ever does. Every process
    started after that inherits the filter; quantgate.backends.child starts its forkserver
    here, so a child that allows AMX can still get it."""
    _before_refusal.append(hook)


def apply(allow_amx: bool) -> Placement:
    """Make this process place llama.cpp's weights as :func:`current` says, before a model
    loads; the same call again is free.

    Raises:
        ConfigError: this process already took another placement (a refused AMX request cannot
            be taken back, nor a granted one).
    """
    global _applied
    wanted = current(allow_amx)
    if _applied is None:
        if wanted == "no-amx":
            for hook in _before_refusal:
                hook()
            if not refuse_amx():
                wanted = "no-extra-buffers"
        elif wanted == "amx" and amx_permission_refused():
            # a filter inherited from the process that started this one: ggml would be refused
            # too and place the weights as no-amx while every report said amx
            raise ConfigError(
                "allow_amx: true, but this process inherited a refusal of AMX from the process "
                "that started it (it had loaded a llama.cpp model without allow_amx first): "
                "load the model through the gate (each model in a child process) or in a "
                "process of its own"
            )
        _applied = wanted
    elif {_applied, wanted} not in ({"no-amx", "no-extra-buffers"}, {_applied}):
        raise ConfigError(
            f"this process already loaded llama.cpp models with placement {_applied}; a model "
            f"with allow_amx: {str(allow_amx).lower()} ({wanted}) needs a process of its own: "
            "load it through the gate (each model in a child process) or in another process"
        )
    return _applied


def applied() -> Placement | None:
    """The placement this process took, or None before its first model load."""
    return _applied


@contextlib.contextmanager
def model_params(placement: Placement) -> Iterator[None]:
    """While a ``llama_cpp.Llama`` is built: its model params as ``placement`` needs them.

    llama-cpp-python's ``Llama`` does not expose ``use_extra_bufts``; it takes its params from
    ``llama_model_default_params()``, wrapped here for the one case that needs it."""
    if placement != "no-extra-buffers":
        yield
        return
    import llama_cpp.llama as module

    original = module.llama_cpp.llama_model_default_params

    def without_extra_buffers():  # -> llama_cpp.llama_model_params
        params = original()
        params.use_extra_bufts = False
        return params

    module.llama_cpp.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        module.llama_cpp.llama_model_default_params = original


# -- the seccomp filter -----------------------------------------------------------------------
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_AUDIT_ARCH_X86_64, _NR_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM = 0xC000003E, 158, 0x1023
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06
_RET_ALLOW, _RET_EPERM = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM

#: classic BPF over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}: refuse
#: arch_prctl(ARCH_REQ_XCOMP_PERM, ...) on x86-64 with EPERM, allow every other call
REFUSE_AMX_PROGRAM: tuple[tuple[int, int, int, int], ...] = (
    (_BPF_LD_W_ABS, 0, 0, 4),  # arch
    (_BPF_JEQ_K, 0, 5, _AUDIT_ARCH_X86_64),
    (_BPF_LD_W_ABS, 0, 0, 0),  # syscall number
    (_BPF_JEQ_K, 0, 3, _NR_ARCH_PRCTL),
    (_BPF_LD_W_ABS, 0, 0, 16),  # args[0], low word (little-endian)
    (_BPF_JEQ_K, 0, 1, _ARCH_REQ_XCOMP_PERM),
    (_BPF_RET_K, 0, 0, _RET_EPERM),
    (_BPF_RET_K, 0, 0, _RET_ALLOW),
)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def refuse_amx() -> bool:
    """Install the filter in this process (and its future children). No library: libseccomp's
    Python binding is a Debian package, not on PyPI; the program is eight instructions.

    Returns False where the kernel or a sandbox refuses the filter."""
    if not seccomp_available():
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    code = b"".join(struct.pack("HBBI", *ins) for ins in REFUSE_AMX_PROGRAM)
    buffer = ctypes.create_string_buffer(code, len(code))
    program = _SockFprog(len(REFUSE_AMX_PROGRAM), ctypes.cast(buffer, ctypes.c_void_p))
    # no_new_privs: an unprivileged process may install a filter only with it set
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) == 0


def amx_permission_refused() -> bool:
    """Asks the kernel for AMX tile state as ggml does: False where it is granted (or the
    request does not exist here), True where refused. Requesting is harmless: ggml asks
    anyway at its first load."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    xfeature_xtiledata = 18
    return libc.syscall(_NR_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, xfeature_xtiledata) != 0


# -- llama.cpp's tools ------------------------------------------------------------------------
def tool_command(args: list[str], allow_amx: bool = False) -> list[str]:
    """``args`` (a llama.cpp tool and its arguments) as run with this machine's placement: on
    an AMX machine through this module's launcher, which refuses AMX and then execs the tool."""
    placement = choose(cpu_flags(), system_info(), allow_amx, seccomp_available())
    if placement in ("default", "amx"):
        return args
    return [sys.executable, "-m", __name__, placement, "--", *args]


def tool_env(placement: Placement) -> dict[str, str]:
    """Environment for a tool under ``placement``: llama.cpp's common arguments read
    LLAMA_ARG_REPACK (``--repack``/``--no-repack``)."""
    return {"LLAMA_ARG_REPACK": "0"} if placement == "no-extra-buffers" else {}


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in PLACEMENTS or argv[1] != "--":
        print(f"usage: python -m {__name__} {{{'|'.join(PLACEMENTS)}}} -- TOOL [ARGS...]")
        return 2
    placement = argv[0]
    if placement == "no-amx" and not refuse_amx():
        placement = "no-extra-buffers"
    env = {**os.environ, **tool_env(placement)}  # type: ignore[arg-type]
    os.execvpe(argv[2], argv[2:], env)
    return 127  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
