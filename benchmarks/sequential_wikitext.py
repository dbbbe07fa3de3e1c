"""Mode sequential over chunks at full scale on the real model: all of WikiText-2's raw test
set (fixtures/data/wikitext2/wiki.test.raw, the file llama-perplexity and the studies use) in
chunks of 512 tokens on SmolLM2-135M, the F16 baseline against Q8_0, Q4_K_M and the Q2_K
canary, PPL increase and mean KLD each gated in mode sequential against the full evaluation.

    .venv/bin/python benchmarks/sequential_wikitext.py [--variants Q8_0,Q4_K_M,Q2_K]
        [--batch 16] [--orders 200] [--threads N] [--max-chunks N]

For each variant, in one run:

1. **the gate**, as ``ppl_increase_pct`` and ``kld_mean`` at their shipped bounds
   (thresholds/smollm2.yaml) in mode sequential run it
   (quantgate.evaluation.quality.compare_sequential: the seeded order, a batch of chunks at a time):
   where each stops, its decision and its 95 % confidence sequence at the stop;
2. **the full evaluation**: every batch of the same order to the last chunk (the gate's
   batches are read from the cache), then mode ci's verdict on all chunks (the bootstrap 95 %
   interval over chunks against the bound);
3. **other orders**: with every chunk's values known, where the gate would stop under
   ``--orders`` other random orders (numpy, no model): the median and 90th percentile of the
   chunks used, and how often the verdict is the full one's;
4. **the measured population at its bound**: the per-chunk values moved so that their mean is
   exactly the bound (KLD scaled, NLL differences shifted), then 1,000 random orders: how
   often the sequence decides either way (each decision excludes the truth; nominal <= 5 %).

The baseline's side is scored once for every chunk (all variants compare with it). Every
variant batch is cached: an interrupted run resumes at its next batch. Writes
reports/sequential_wikitext.json and prints one table. Exits 1 when a gate's verdict differs
from the full evaluation's, or when a case the full evaluation decides clearly (its interval
below 0.8x or above 1.25x the bound) used more than 30 % of the chunks.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from quantgate.configuration.registry import load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.evaluation.quality import (
    QualityEvaluator,
    compare_sequential,
    joined,
    sequential_looks,
)
from quantgate.session import GateSession
from quantgate.verdicts.gates import Outcome, Threshold
from quantgate.verdicts.sequential import first_mean_decisions, item_order

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2"
TEXT = REPO / "fixtures" / "data" / "wikitext2" / "wiki.test.raw"
METRICS = ("ppl_increase_pct", "kld_mean")
#: a full-set interval this far from the bound (a factor) is a "clear case": <= 30 % of chunks
CLEAR_FACTOR, CLEAR_SHARE = 1.25, 0.30


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="Q8_0,Q4_K_M,Q2_K")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-chunks", type=int, default=0, help="the first N chunks (a dry run)")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "sequential_wikitext.json")
    ap.add_argument(
        "--registry",
        type=Path,
        default=REPO / "fixtures" / "models.yaml",
        help="the registry (a copy with smaller evaluation settings: the tests' tiny run)",
    )
    opts = ap.parse_args()

    registry = load_registry(opts.registry.resolve())
    thresholds = Thresholds(REPO / "thresholds", registry)
    session = GateSession(registry, thresholds, opts.threads, root=REPO)
    settings = registry.evaluation_for(MODEL).perplexity.model_copy(
        update={"max_chunks": opts.max_chunks, "sequential_batch": opts.batch}
    )
    evaluator = QualityEvaluator(settings, TEXT)
    pairs = {p.compression_name: p for p in registry.pairs([MODEL])}
    rows = []
    try:
        start = time.perf_counter()
        base = evaluator.baseline(session.loading.baseline_backend(MODEL))
        print(f"baseline: {len(base.chunk_nll)} chunks, PPL {base.ppl:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
        for name in opts.variants.split(","):
            shipped = thresholds.for_pair(MODEL, name)
            bounds = {m: shipped[m].value for m in METRICS}
            variant = session.loading.variant_backend(pairs[name])
            start = time.perf_counter()
            gate = compare_sequential(evaluator, base, variant, bounds, opts.batch)
            gate_seconds = time.perf_counter() - start
            print(f"gate {name}: " + ", ".join(
                f"{m} {s.decision} after {s.n_used}" for m, s in gate.sequential.items()
            ), flush=True)  # fmt: skip
            start = time.perf_counter()
            order = item_order(len(base.chunk_nll))
            full = joined(
                [
                    evaluator.compare(base, variant, order[i : i + opts.batch])
                    for i in range(0, len(order), opts.batch)
                ]
            )
            rest_seconds = time.perf_counter() - start
            for metric in METRICS:
                rows.append(
                    compare(opts, name, metric, bounds[metric], gate, full)
                    | {"gate_seconds": gate_seconds, "rest_seconds": rest_seconds}
                )
                print(json.dumps(rows[-1]), flush=True)
    finally:
        session.close()
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows, base.ppl))
    bad = [
        f"{r['variant']} {r['metric']}"
        for r in rows
        if not r["same_verdict"] or r["clear_but_long"]
    ]
    if bad:
        print(f"NOT MET: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def _verdict(metric: str, value: float, bound: float, mode: str, **kw) -> str:
    outcome = Outcome(metric, value, Threshold(metric, bound, "thresholds/", mode), **kw)
    return "pass" if outcome.passed else "fail"


def compare(opts, name, metric, bound, gate, full) -> dict:
    """One metric's gate stop against the full evaluation of the same order (a table row)."""
    state = gate.sequential[metric]
    interval = full.intervals[metric]
    value = full.metrics[metric]
    full_verdict = _verdict(metric, value, bound, "ci", interval=interval)
    decided = state.decision if state.decision in ("pass", "fail") else None
    gate_verdict = decided or full_verdict  # exhausted: the gate is the full evaluation
    n = full.n_chunks
    shares, agree = [], 0
    rng = np.random.default_rng(17)
    for _ in range(opts.orders):
        perm = rng.permutation(n)
        stop = _replay(full, perm, n, metric, bound, opts.batch)
        shares.append(stop.n_used / n)
        agree += (stop.decision if stop.decision != "exhausted" else full_verdict) == full_verdict
    at_bound = null_decisions(full, metric, bound, opts.batch)
    clear = interval.high * CLEAR_FACTOR <= bound or interval.low >= bound * CLEAR_FACTOR
    share = state.n_used / n
    return {
        "variant": name,
        "metric": metric,
        "threshold": bound,
        "n_chunks": n,
        "full_value": value,
        "full_ci95": [interval.low, interval.high],
        "full_verdict": full_verdict,
        "gate_stop": state.decision,
        "gate_chunks_used": state.n_used,
        "gate_share": share,
        "gate_value": state.estimate,
        "gate_sequence95": [state.low, state.high],
        "gate_verdict": gate_verdict,
        "same_verdict": gate_verdict == full_verdict,
        "clear_case": clear,
        "clear_but_long": clear and share > CLEAR_SHARE,
        "orders": opts.orders,
        "orders_share_median": float(np.median(shares)),
        "orders_share_p90": float(np.percentile(shares, 90)),
        "orders_same_verdict": agree,
        "chunk_cv": float(np.std(_values(full, metric)) / abs(np.mean(_values(full, metric)))),
        "at_bound_pass": at_bound["pass"],
        "at_bound_fail": at_bound["fail"],
    }


def _values(full, metric: str) -> np.ndarray:
    if metric == "kld_mean":
        return np.asarray(full.chunk_kld)
    return np.asarray(full.chunk_nll) - np.asarray(full.chunk_nll_baseline)


def null_decisions(full, metric, bound, batch, runs=1000) -> dict[str, float]:
    """The measured per-chunk population moved to the bound, in ``runs`` random orders: the
    share of orders whose sequence decides pass or fail (numpy: mean_look's rule)."""
    x = _values(full, metric)
    if metric == "kld_mean":
        pop, theta = x * (bound / x.mean()), bound
    else:
        theta = math.log1p(bound / 100) if metric == "ppl_increase_pct" else bound
        pop = x - x.mean() + theta
    rng = np.random.default_rng(23)
    orders = np.array([rng.permutation(pop) for _ in range(runs)])
    decisions = first_mean_decisions(orders, theta, batch)
    return {
        "pass": float(np.mean(decisions == "pass")),
        "fail": float(np.mean(decisions == "fail")),
    }


def _replay(full, perm, n, metric, bound, batch):
    """The gate on the scored chunks in another order (no model)."""
    from dataclasses import replace

    def pick(values: list[float]) -> list[float]:
        return [values[i] for i in perm]

    shuffled = replace(
        full,
        chunk_nll=pick(full.chunk_nll),
        chunk_nll_baseline=pick(full.chunk_nll_baseline),
        chunk_kld=pick(full.chunk_kld),
    )
    for t in [*range(batch, n, batch), n]:
        head = replace(
            shuffled,
            chunk_nll=shuffled.chunk_nll[:t],
            chunk_nll_baseline=shuffled.chunk_nll_baseline[:t],
            chunk_kld=shuffled.chunk_kld[:t],
        )
        stop = sequential_looks(head, n, {metric: bound})[metric]
        if stop.decision != "continue":
            return stop
    raise AssertionError("unreachable: the last look is at n")  # pragma: no cover


def table(rows: list[dict], baseline_ppl: float) -> str:
    lines = [
        "| variant | metric (bound) | full set [95 % CI] | full verdict | gate: stop, chunks "
        "used | sequence at the stop | gate verdict | other orders: median, 90th pct | same | "
        "chunks' CV | at the bound: pass, fail |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["full_ci95"]
        slo, shi = r["gate_sequence95"]
        lines.append(
            f"| {r['variant']} | {r['metric']} ({r['threshold']:g}) | {r['full_value']:.4g} "
            f"[{lo:.4g}, {hi:.4g}] | {r['full_verdict']} | {r['gate_stop']}, "
            f"{r['gate_chunks_used']} ({100 * r['gate_share']:.1f} %) | [{slo:.4g}, {shi:.4g}] "
            f"| {r['gate_verdict']} | {100 * r['orders_share_median']:.1f} %, "
            f"{100 * r['orders_share_p90']:.1f} % | {r['orders_same_verdict']}/{r['orders']} | "
            f"{r['chunk_cv']:.2f} | {r['at_bound_pass']:.3f}, {r['at_bound_fail']:.3f} |"
        )
    n = rows[0]["n_chunks"] if rows else 0
    lines.append(f"\n{n} chunks of 512 tokens; F16 baseline PPL {baseline_ppl:.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
