"""Where llama.cpp's weights go (quantgate.llama_placement), decided from CPU-feature lines
and llama.cpp's system info line, with and without AMX; the machine record's parsing and line."""

from __future__ import annotations

import pytest

from quantgate import llama_placement as placement
from quantgate.errors import ConfigError
from quantgate.night.machine import CpuFacts, describe, parse_cpuinfo

#: /proc/cpuinfo of three machines this project runs on (abridged: the first processor)
SAPPHIRE_RAPIDS = (
    "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 167\n"
    "model name\t: Intel(R) Xeon(R) Processor\n"
    "flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512bw "
    "avx512vl avx_vnni avx512_bf16 avx512_vnni amx_bf16 avx512_fp16 amx_tile amx_int8\n"
    "\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu\n"
)
EPYC = """processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 7B13 64-Core Processor
flags		: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2
"""
GRAVITON = (
    "processor\t: 0\nBogoMIPS\t: 243.75\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimddp "
    "sve i8mm bf16\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n"
)
AMX_BUILD = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | REPACK = 1 |"
AVX2_BUILD = "CPU : SSE3 = 1 | AVX2 = 1 | FMA = 1 | REPACK = 1 |"


def _flags(cpuinfo: str) -> list[str]:
    return parse_cpuinfo(cpuinfo)[1]


def test_cpuinfo_gives_the_first_processors_model_and_flags():
    model, flags = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert model == "Intel(R) Xeon(R) Processor"
    assert "amx_int8" in flags and flags[-1] == "amx_int8"  # not the second block's
    assert parse_cpuinfo(GRAVITON) == (
        "ARM implementer 0x41 part 0xd40",
        _flags(GRAVITON),
    )
    assert {"asimd", "sve", "i8mm"} <= set(_flags(GRAVITON))


@pytest.mark.parametrize(
    ("cpuinfo", "build", "allow_amx", "can_refuse", "expected"),
    [
        # an AMX CPU with llama.cpp's AMX kernels built in: refused unless allowed
        (SAPPHIRE_RAPIDS, AMX_BUILD, False, True, "no-amx"),
        (SAPPHIRE_RAPIDS, AMX_BUILD, True, True, "amx"),
        # no seccomp here: extra buffer types off instead (no AMX, no repacking)
        (SAPPHIRE_RAPIDS, AMX_BUILD, False, False, "no-extra-buffers"),
        # a build without AMX kernels (generic, or built elsewhere): nothing to keep away from
        (SAPPHIRE_RAPIDS, AVX2_BUILD, False, True, "default"),
        # CPUs without AMX: llama.cpp's own placement, whatever the setting says
        (EPYC, AVX2_BUILD, False, True, "default"),
        (EPYC, AMX_BUILD, True, True, "default"),
        (GRAVITON, "CPU : NEON = 1 | ARM_FMA = 1 | REPACK = 1 |", False, False, "default"),
    ],
)
def test_the_placement_follows_the_cpu_and_the_build(
    cpuinfo, build, allow_amx, can_refuse, expected
):
    assert placement.choose(_flags(cpuinfo), build, allow_amx, can_refuse) == expected


def test_amx_needs_both_tile_flags():
    assert placement.cpu_has_amx(["amx_tile", "amx_int8"])
    assert not placement.cpu_has_amx(["amx_bf16", "amx_tile"])  # no int8 kernels' flag
    assert not placement.cpu_has_amx(_flags(EPYC))


def _on(monkeypatch, cpuinfo: str, build: str, seccomp: bool = True) -> None:
    monkeypatch.setattr(placement, "cpu_flags", lambda: frozenset(_flags(cpuinfo)))
    monkeypatch.setattr(placement, "system_info", lambda: build)
    monkeypatch.setattr(placement, "seccomp_available", lambda: seccomp)


def test_the_tools_run_through_the_launcher_only_where_amx_is_refused(monkeypatch):
    _on(monkeypatch, SAPPHIRE_RAPIDS, AMX_BUILD)
    wrapped = placement.tool_command(["llama-bench", "-m", "x.gguf"])
    assert wrapped[1:5] == ["-m", "quantgate.llama_placement", "no-amx", "--"]
    assert wrapped[-3:] == ["llama-bench", "-m", "x.gguf"]
    assert placement.tool_command(["llama-bench"], allow_amx=True) == ["llama-bench"]
    _on(monkeypatch, EPYC, AVX2_BUILD)
    assert placement.tool_command(["llama-bench"]) == ["llama-bench"]
    assert placement.tool_env("no-extra-buffers") == {"LLAMA_ARG_REPACK": "0"}
    assert placement.tool_env("no-amx") == {}


def test_the_launcher_says_how_to_call_it(capsys):
    assert placement.main(["sideways", "--", "true"]) == 2
    assert (
        "usage: python -m quantgate.llama_placement {default|no-amx|amx|" in capsys.readouterr().out
    )


def test_a_process_keeps_the_placement_it_took(monkeypatch):
    _on(monkeypatch, SAPPHIRE_RAPIDS, AMX_BUILD)
    monkeypatch.setattr(placement, "_applied", "no-amx")
    assert placement.apply(allow_amx=False) == "no-amx"
    with pytest.raises(
        ConfigError, match=r"placement no-amx; a model with allow_amx: true \(amx\)"
    ):
        placement.apply(allow_amx=True)
    # where the filter could not be installed, a later load of the same kind is the same
    monkeypatch.setattr(placement, "_applied", "no-extra-buffers")
    assert placement.apply(allow_amx=False) == "no-extra-buffers"


def test_what_must_start_unfiltered_starts_just_before_the_refusal(monkeypatch):
    _on(monkeypatch, SAPPHIRE_RAPIDS, AMX_BUILD)
    events: list[str] = []
    monkeypatch.setattr(placement, "_applied", None)
    monkeypatch.setattr(placement, "_before_refusal", [lambda: events.append("hook")])
    monkeypatch.setattr(placement, "refuse_amx", lambda: events.append("filter") or True)
    assert placement.apply(allow_amx=False) == "no-amx"
    assert events == ["hook", "filter"]
    # allowing AMX refuses nothing, so nothing runs; a refusal inherited anyway is an error
    monkeypatch.setattr(placement, "_applied", None)
    monkeypatch.setattr(placement, "amx_permission_refused", lambda: True)
    with pytest.raises(ConfigError, match=r"inherited a refusal of AMX"):
        placement.apply(allow_amx=True)
    assert events == ["hook", "filter"]


def test_the_placement_enters_result_keys_only_where_it_is_not_llama_cpps_own(monkeypatch):
    from quantgate.backends.base import result_settings
    from quantgate.configuration.backend_settings import settings_for

    settings = settings_for("llama_cpp")
    _on(monkeypatch, EPYC, AVX2_BUILD)
    default = result_settings("llama_cpp", settings)
    assert "placement" not in default and "allow_amx" not in default
    # allow_amx means nothing without AMX: the same key
    allowed = settings.model_copy(update={"allow_amx": True})
    assert result_settings("llama_cpp", allowed) == default
    _on(monkeypatch, SAPPHIRE_RAPIDS, AMX_BUILD)
    assert result_settings("llama_cpp", settings)["placement"] == "no-amx"
    assert result_settings("llama_cpp", allowed)["placement"] == "amx"
    assert "placement" not in result_settings("transformers", settings_for("transformers"))


def _run_bpf(program, arch: int, nr: int, arg0: int) -> int:
    """The three classic-BPF instructions the program uses, over struct seccomp_data."""
    import struct

    data = struct.pack("<iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == 0x15:  # BPF_JMP | BPF_JEQ | BPF_K
            pc += 1 + (jt if acc == k else jf)
        elif code == 0x06:  # BPF_RET | BPF_K
            return k
        else:
            raise AssertionError(f"instruction {code:#x} at {pc}")


def test_the_refusal_program_refuses_one_request_and_allows_the_rest():
    program = placement.REFUSE_AMX_PROGRAM
    x86_64, i386, eperm, allow = 0xC000003E, 0x40000003, 0x00050001, 0x7FFF0000
    arch_prctl, req_xcomp_perm, get_xcomp_perm = 158, 0x1023, 0x1022
    assert _run_bpf(program, x86_64, arch_prctl, req_xcomp_perm) == eperm
    assert _run_bpf(program, x86_64, arch_prctl, get_xcomp_perm) == allow
    assert _run_bpf(program, x86_64, 1, req_xcomp_perm) == allow  # write(2), same argument
    assert _run_bpf(program, i386, arch_prctl, req_xcomp_perm) == allow


def test_the_machine_line_names_the_kernel_flags_and_the_placement():
    cpu = CpuFacts("Intel(R) Xeon(R) Processor", "x86_64", tuple(_flags(SAPPHIRE_RAPIDS)), 2)
    assert cpu.kernel_flags == [
        *("ssse3", "fma", "avx", "f16c", "avx2", "avx512f", "avx512dq", "avx512bw"),
        *("avx512vl", "avx_vnni", "avx512_bf16", "avx512_vnni", "amx_bf16", "avx512_fp16"),
        *("amx_tile", "amx_int8"),
    ]
    record = {
        "cpu": cpu.model,
        "arch": cpu.arch,
        "cores": 2,
        "threads": 2,
        "cpu_flags": cpu.kernel_flags,
        "llama_cpp_placement": "no-amx",
        "gpus": [],
    }
    line = describe(record)
    assert line.startswith("Intel(R) Xeon(R) Processor (x86_64); 2 cores; threads: 2; flags: ")
    assert line.endswith("amx_tile amx_int8; llama.cpp weights: no-amx; no GPU")
