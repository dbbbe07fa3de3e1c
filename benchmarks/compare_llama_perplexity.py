"""PPL and KLD of the suite vs llama.cpp's llama-perplexity, same files, text and n_ctx.

    .venv/bin/python benchmarks/compare_llama_perplexity.py [--model smollm2] [--variants Q8_0,Q2_K]

Prints one table; exits 1 when the baseline PPL differs by more than 0.5 %.
llama-perplexity runs with ``-b n_batch`` and its default flash attention, as the suite's
scoring context does with an F16 KV cache (quantgate.backends.llama_cpp._TreeContext).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from quantgate.artifacts.llama_tools import tool
from quantgate.configuration.registry import load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.llama_placement import tool_command
from quantgate.session import GateSession

REPO = Path(__file__).resolve().parents[1]


def llama_perplexity(args: list[str]) -> str:
    # with the gate's placement (quantgate.llama_placement): off AMX on an AMX machine
    command = tool_command([str(tool("llama-perplexity")), *args])
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"llama-perplexity failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout + proc.stderr


def grab(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    if not m:
        sys.exit(f"could not find {pattern!r} in llama-perplexity's output")
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--variants", default="Q8_0,Q2_K")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument(
        "--registry",
        type=Path,
        default=REPO / "fixtures" / "models.yaml",
        help="the registry (a copy with smaller evaluation settings: the tests' tiny run)",
    )
    opts = ap.parse_args()

    registry = load_registry(opts.registry.resolve())
    session = GateSession(registry, Thresholds(REPO / "thresholds", registry), opts.threads)
    ppl_settings = registry.evaluation_for(opts.model).perplexity
    text = registry.resolve(ppl_settings.text)
    n_batch = session.loading.settings(opts.model).n_batch
    common = [
        "-f",
        str(text),
        "-c",
        str(ppl_settings.n_ctx),
        "-b",
        str(n_batch),
        "-t",
        str(opts.threads),
    ]
    if ppl_settings.max_chunks:
        common += ["--chunks", str(ppl_settings.max_chunks)]

    base = session.artifacts.baseline(opts.model)
    ours = session.perplexity.evaluator(opts.model).baseline(
        session.loading.baseline_backend(opts.model)
    )
    ref = grab(
        r"Final estimate: PPL = ([0-9.]+)", llama_perplexity(["-m", str(base.path), *common])
    )
    rel = (ours.ppl / ref - 1) * 100
    rows = [("baseline PPL", base.path.name, f"{ours.ppl:.4f}", f"{ref:.4f}", f"{rel:+.3f} %")]

    with tempfile.TemporaryDirectory() as tmp:
        kld_base = Path(tmp) / "kld-base.bin"
        llama_perplexity(["-m", str(base.path), *common, "--kl-divergence-base", str(kld_base)])
        pairs = {p.compression_name: p for p in registry.pairs([opts.model])}
        for name in filter(None, opts.variants.split(",")):
            pair = pairs[name]
            result = session.perplexity.result(pair)
            out = llama_perplexity(
                [
                    "-m",
                    str(session.artifacts.variant(pair).path),
                    *common,
                    "--kl-divergence-base",
                    str(kld_base),
                    "--kl-divergence",
                ]
            )
            for label, value, pattern in [
                ("mean KLD", result.kld_mean, r"Mean\s+KLD:\s+([0-9.]+)"),
                ("99% KLD", result.kld_p99, r"99\.0%\s+KLD:\s+([0-9.]+)"),
                ("same top-1 %", result.top1_agreement_pct, r"Same top p:\s+([0-9.]+)"),
            ]:
                theirs = grab(pattern, out)
                rows.append(
                    (
                        f"{name} {label}",
                        pair.id,
                        f"{value:.5f}",
                        f"{theirs:.5f}",
                        f"{value - theirs:+.5f}",
                    )
                )
    session.close()

    print(
        f"\ntext {text.name}, n_ctx {ppl_settings.n_ctx}, n_batch {n_batch}, "
        f"threads {opts.threads}, {ours.n_scored} scored tokens"
    )
    print(
        f"| {'metric':<22} | {'artifact':<34} | {'quantgate':>10} | {'llama-perplexity':>16} "
        f"| {'difference':>11} |"
    )
    print(f"|{'-' * 24}|{'-' * 36}|{'-' * 12}|{'-' * 18}|{'-' * 13}|")
    for r in rows:
        print(f"| {r[0]:<22} | {r[1]:<34} | {r[2]:>10} | {r[3]:>16} | {r[4]:>11} |")
    return 0 if abs(rel) <= 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
