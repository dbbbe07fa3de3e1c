"""Tokens/s measured by the suite vs llama.cpp's llama-bench, back to back, same files,
threads and pp/tg lengths.

    .venv/bin/python benchmarks/compare_llama_bench.py [--model smollm2] [--rounds 5]

Both sides run the llama-bench protocol (pp: one prompt of n_prompt random tokens; tg: n_gen
single-token decodes from an empty context). Absolute numbers move 3-5x with the machine's other
load; the ratio column is what the issue's +-15 % agreement is about.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from quantgate.llama_tools import tool
from quantgate.registry import ThroughputSettings, load_registry
from quantgate.session import GateSession
from quantgate.thresholds import Thresholds
from quantgate.throughput import tokens_per_second, workloads

REPO = Path(__file__).resolve().parents[1]


def llama_bench(
    path: Path,
    n_prompt: int,
    gen_lengths: tuple[int, ...],
    threads: int,
    rounds: int,
    flash_attn: str = "0",
) -> dict:
    """llama-bench's pp and tg tokens/s; tg at several lengths is their mean (Study A's TPS)."""
    out = subprocess.run(
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
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates: dict[str, list[float]] = {"pp": [], "tg": []}
    for row in json.loads(out):
        rates["pp" if row["n_prompt"] else "tg"].append(float(row["avg_ts"]))
    return {kind: sum(r) / len(r) for kind, r in rates.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument(
        "--n-gen",
        help="tg lengths, comma-separated (Study A: 128,256,512); default: the registry's",
    )
    opts = ap.parse_args()

    registry = load_registry(REPO / "fixtures" / "models.yaml")
    session = GateSession(registry, Thresholds(REPO / "thresholds", registry), opts.threads)
    tp: ThroughputSettings = registry.evaluation_for(opts.model).throughput
    update: dict[str, object] = {"rounds": opts.rounds}
    if opts.n_gen:
        update["n_gen"] = [int(n) for n in opts.n_gen.split(",")]
    tp = ThroughputSettings.model_validate(tp.model_dump() | update)
    artifacts = [session.artifacts.baseline(opts.model)] + [
        session.artifacts.variant(p) for p in registry.pairs([opts.model])
    ]
    rows = []
    for artifact in artifacts:
        backend = session.backend(artifact, opts.model)
        ours = {
            k: tokens_per_second(w, tp)
            for k, w in workloads(backend, tp, session.settings(opts.model).seed).items()
        }
        session.close()  # free the cores' caches before llama-bench runs
        lengths = tp.gen_lengths
        theirs = llama_bench(artifact.path, tp.n_prompt, lengths, opts.threads, opts.rounds)
        tg = "/".join(map(str, lengths))
        for kind, n in (("pp", str(tp.n_prompt)), ("tg", tg)):
            rows.append((artifact.label, f"{kind}{n}", ours[kind], theirs[kind]))
    print(f"\nthreads {opts.threads}, {opts.rounds} rounds each, run back to back")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
