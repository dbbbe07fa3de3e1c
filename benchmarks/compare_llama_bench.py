"""Tokens/s measured by the suite vs llama.cpp's llama-bench, back to back, same files,
threads and pp/tg lengths.

    .venv/bin/python benchmarks/compare_llama_bench.py [--model smollm2] [--rounds 5]
        [--n-gen 128,256,512] [--tolerance 0.10]

Both sides run the llama-bench protocol (pp: one prompt of n_prompt random tokens; tg: n_gen
single-token decodes from an empty context) with the same weight placement: on an AMX machine
both with AMX refused (quantgate.llama_placement), llama-bench through the same launcher.
Absolute numbers move 3-5x with the machine's other load; the ratio column is what counts:
exits 1 when a ratio is beyond 1 ± tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from quantgate.artifacts.llama_tools import tool
from quantgate.configuration.registry import ThroughputSettings, load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.evaluation.throughput import tokens_per_second, workloads
from quantgate.llama_placement import current, machine_facts, tool_command
from quantgate.night import machine
from quantgate.session import GateSession

REPO = Path(__file__).resolve().parents[1]


def llama_bench(
    path: Path,
    n_prompt: int,
    gen_lengths: Sequence[int],
    threads: int,
    rounds: int,
    flash_attn: str = "0",
) -> dict[str, float]:
    """llama-bench's pp and tg tokens/s (pp alone where ``gen_lengths`` is ``[0]``); tg at
    several lengths is their mean (Study A's TPS). Run with the gate's placement: on an AMX
    machine with AMX refused (quantgate.llama_placement), as the gate loads its models."""
    out = subprocess.run(
        tool_command(
            [
                str(tool("llama-bench")),
                "-m",
                str(path),
                "-p",
                str(n_prompt),
                "-n",
                ",".join(map(str, gen_lengths)),
                "-t",
                str(threads),
                "-r",
                str(rounds),
                "-fa",
                flash_attn,
                "-o",
                "json",
            ]
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates: dict[str, list[float]] = {"pp": [], "tg": []}
    for row in json.loads(out):
        rates["pp" if row["n_prompt"] else "tg"].append(float(row["avg_ts"]))
    return {kind: sum(r) / len(r) for kind, r in rates.items() if r}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--variants", help="compression names, comma-separated; default: all")
    ap.add_argument("--tolerance", type=float, default=0.10, help="exit 1 beyond it")
    ap.add_argument(
        "--n-gen",
        help="tg lengths, comma-separated (Study A: 128,256,512); default: the registry's",
    )
    ap.add_argument(
        "--registry",
        type=Path,
        default=REPO / "fixtures" / "models.yaml",
        help="the registry (a copy with smaller evaluation settings: the tests' tiny run)",
    )
    opts = ap.parse_args()

    registry = load_registry(opts.registry.resolve())
    session = GateSession(registry, Thresholds(REPO / "thresholds", registry), opts.threads)
    tp: ThroughputSettings = registry.evaluation_for(opts.model).throughput
    update: dict[str, object] = {"rounds": opts.rounds}
    if opts.n_gen:
        update["n_gen"] = [int(n) for n in opts.n_gen.split(",")]
    tp = ThroughputSettings.model_validate(tp.model_dump() | update)
    chosen = opts.variants.split(",") if opts.variants else None
    artifacts = [session.artifacts.baseline(opts.model)] + [
        session.artifacts.variant(p)
        for p in registry.pairs([opts.model])
        if chosen is None or p.compression_name in chosen
    ]
    rows = []
    for artifact in artifacts:
        backend = session.loading.backend(artifact, opts.model)
        ours = {
            k: tokens_per_second(w, tp)
            for k, w in workloads(backend, tp, session.loading.settings(opts.model).seed).items()
        }
        session.close()  # free the cores' caches before llama-bench runs
        lengths = tp.gen_lengths
        theirs = llama_bench(artifact.path, tp.n_prompt, lengths, opts.threads, opts.rounds)
        tg = "/".join(map(str, lengths))
        for kind, n in (("pp", str(tp.n_prompt)), ("tg", tg)):
            rows.append((artifact.label, f"{kind}{n}", ours[kind], theirs[kind]))
    print(
        f"\n{machine.describe(machine.machine_record(opts.threads, machine_facts()))}\n"
        f"weights placed {current(allow_amx=False)} on both sides; {opts.rounds} rounds each, "
        "run back to back"
    )
    print(
        f"| {'artifact':<18} | {'test':<14} | {'quantgate t/s':>13} | {'llama-bench t/s':>15} "
        f"| {'ratio':>6} |"
    )
    print(f"|{'-' * 20}|{'-' * 16}|{'-' * 15}|{'-' * 17}|{'-' * 8}|")
    for label, test, ours_tps, theirs_tps in rows:
        print(
            f"| {label:<18} | {test:<14} | {ours_tps:>13.1f} | {theirs_tps:>15.1f} "
            f"| {ours_tps / theirs_tps:>6.2f} |"
        )
    outside = [r for r in rows if abs(r[2] / r[3] - 1) > opts.tolerance]
    print(
        f"\n{len(rows) - len(outside)} of {len(rows)} within ±{opts.tolerance:.0%} of llama-bench"
        + (": " + ", ".join(f"{r[0]} {r[1]}" for r in outside) + " outside" if outside else "")
    )
    return 1 if outside else 0


if __name__ == "__main__":
    raise SystemExit(main())
