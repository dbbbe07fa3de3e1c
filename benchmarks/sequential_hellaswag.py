"""Mode sequential at full scale on the real model: all 10,042 items of HellaSwag val
(``hellaswag_full``, fixtures/tasks/) on SmolLM2-135M, the F16 baseline against Q8_0, Q4_K_M
and the Q2_K canary, each gated on D_hellaswag in mode sequential against the full evaluation.

    .venv/bin/python benchmarks/sequential_hellaswag.py [--variants Q8_0,Q4_K_M,Q2_K]
        [--threshold 10] [--batch 100] [--orders 200] [--threads N]

For each variant, in one run:

1. **the gate**, as ``D_hellaswag: {value: T, mode: sequential}`` runs it
   (quantgate.evaluation.retention.run_sequential: the seeded order, a batch at a time): where it
   stops, its decision and its 95 % confidence sequence at the stop;
2. **the full evaluation**: every batch of the same order to the last item (the batches the
   gate scored are read from the cache, so nothing is scored twice), then mode ci's verdict on
   all 10,042 items (the paired bootstrap 95 % interval of D against the bound);
3. **other orders**: with every item's score known, where the gate would stop under
   ``--orders`` other uniformly random orders (numpy on the scored items, no model): the
   median and 90th percentile of the items used, and how often the verdict is the full one's.

Every batch is cached like any result: an interrupted run (hours on 2 cores: about 30 min a
model) resumes at its next batch. Writes reports/sequential_hellaswag.json and prints one
table. Exits 1 when the gate's verdict differs from the full evaluation's, or when a variant
the full evaluation decides clearly (its interval 2 points or more from the bound) used more
than 30 % of the items.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from quantgate.configuration.registry import load_registry
from quantgate.configuration.thresholds import Thresholds
from quantgate.evaluation.retention import (
    PairedItems,
    joined_comparison,
    population_size,
    run_sequential,
)
from quantgate.session import GateSession
from quantgate.verdicts.gates import Outcome, Threshold
from quantgate.verdicts.sequential import item_order, sequential_retention

REPO = Path(__file__).resolve().parents[1]
MODEL, BENCHMARK, TASK = "smollm2", "hellaswag", "hellaswag_full"
#: a full-set interval this far from the bound is a "clear case" (issue 17: <= 30 % of items)
CLEAR_MARGIN, CLEAR_SHARE = 2.0, 0.30


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="Q8_0,Q4_K_M,Q2_K")
    ap.add_argument("--threshold", type=float, default=None, help="default: thresholds/")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None, help="the first N items only (a dry run)")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "sequential_hellaswag.json")
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
    tasks = session.retention.task_index()
    pairs = {p.compression_name: p for p in registry.pairs([MODEL])}
    bench = (
        registry.models[MODEL]
        .benchmarks[BENCHMARK]
        .model_copy(update={"task": TASK, "limit": opts.limit, "sequential_batch": opts.batch})
    )
    where = f"benchmarks/sequential_hellaswag.py: {MODEL} {TASK}"
    rows, gates = [], {}
    try:
        # the gates first (minutes: their stops are the headline), then the full evaluations
        for phase in ("gate", "full"):
            for name in opts.variants.split(","):
                bound = opts.threshold
                if bound is None:
                    bound = thresholds.for_pair(MODEL, name)[f"D_{BENCHMARK}"].value
                # the variant, then the baseline: the pool (two models) evicts the last variant
                variant = session.loading.variant_backend(pairs[name])
                baseline = session.loading.baseline_backend(MODEL)
                start = time.perf_counter()
                if phase == "gate":
                    items = PairedItems(baseline, variant, BENCHMARK, bench, tasks, where)
                    gate = run_sequential(items, bound)
                    gates[name] = gate, time.perf_counter() - start
                    state = gate.sequential
                    print(f"gate {name}: {state.decision} after {state.n_used}", flush=True)
                    continue
                gate, gate_seconds = gates[name]
                row = compare(opts, bench, tasks, where, baseline, variant, name, bound, gate)
                rows.append(row | {"gate_seconds": gate_seconds})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        session.close()
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))
    bad = [r["variant"] for r in rows if not r["same_verdict"] or r["clear_but_long"]]
    if bad:
        print(f"NOT MET: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def compare(opts, bench, tasks, where, baseline, variant, name, bound, gate) -> dict:
    """The gate's stop against the full evaluation of the same order (one table row)."""
    state = gate.sequential
    start = time.perf_counter()
    items = PairedItems(baseline, variant, BENCHMARK, bench, tasks, where)
    order = item_order(population_size(bench, tasks, where))
    for start in range(0, len(order), bench.sequential_batch):
        items.score(order[start : start + bench.sequential_batch])
    full = joined_comparison(BENCHMARK, bench, items.used)
    full_seconds = time.perf_counter() - start
    interval = full.interval()
    threshold = Threshold(f"D_{BENCHMARK}", bound, "--threshold", "ci")
    full_pass = Outcome(f"D_{BENCHMARK}", full.d, threshold, interval=interval).passed
    gate_threshold = Threshold(f"D_{BENCHMARK}", bound, "--threshold", "sequential")
    decided = state.decision if state.decision in ("pass", "fail") else None
    gate_interval = gate.interval() if decided is None else None
    gate_pass = Outcome(
        f"D_{BENCHMARK}", gate.d, gate_threshold, interval=gate_interval, decision=decided
    ).passed
    paired = full.paired_scores()  # per-item scores in the order scored
    assert paired is not None  # a mean metric: PairedItems checked it
    b, c = (np.array(scores) for scores in paired)
    # the gate's own order replayed on the scored items: the same stop (a check of the loop)
    replay = sequential_retention(b, c, bound, batch=opts.batch)
    assert (replay.decision, replay.n_used) == (state.decision, state.n_used), (replay, state)
    shares, agree = [], 0
    rng = np.random.default_rng(17)
    for _ in range(opts.orders):
        perm = rng.permutation(len(b))
        other = sequential_retention(b[perm], c[perm], bound, batch=opts.batch)
        shares.append(other.n_used / len(b))
        verdict = other.decision if other.decision != "exhausted" else None
        agree += (verdict or ("pass" if full_pass else "fail")) == ("pass" if full_pass else "fail")
    clear = interval.high <= bound - CLEAR_MARGIN or interval.low >= bound + CLEAR_MARGIN
    share = state.n_used / state.n_available
    return {
        "variant": name,
        "threshold": bound,
        "n_items": len(b),
        "baseline_acc_norm": float(b.mean()),
        "variant_acc_norm": float(c.mean()),
        "full_d": full.d,
        "full_ci95": [interval.low, interval.high],
        "full_verdict": "pass" if full_pass else "fail",
        "gate_stop": state.decision,
        "gate_items_used": state.n_used,
        "gate_share": share,
        "gate_sequence95": [state.low, state.high],
        "gate_verdict": "pass" if gate_pass else "fail",
        "same_verdict": gate_pass == full_pass,
        "clear_case": clear,
        "clear_but_long": clear and share > CLEAR_SHARE,
        "orders": opts.orders,
        "orders_share_median": float(np.median(shares)),
        "orders_share_p90": float(np.percentile(shares, 90)),
        "orders_same_verdict": agree,
        "rest_seconds": full_seconds,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| variant | full-set D % [95 % CI] | full verdict | gate: stop, items used | "
        "sequence at the stop | gate verdict | other orders: median, 90th pct | same verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["full_ci95"]
        slo, shi = r["gate_sequence95"]
        lines.append(
            f"| {r['variant']} (bound {r['threshold']:g}) | {r['full_d']:.2f} [{lo:.2f}, "
            f"{hi:.2f}] | {r['full_verdict']} | {r['gate_stop']}, {r['gate_items_used']:,} "
            f"({100 * r['gate_share']:.1f} %) | [{slo:.1f}, {shi:.1f}] | {r['gate_verdict']} | "
            f"{100 * r['orders_share_median']:.1f} %, {100 * r['orders_share_p90']:.1f} % | "
            f"{r['orders_same_verdict']}/{r['orders']} |"
        )
    n = rows[0]["n_items"] if rows else 0
    base = rows[0]["baseline_acc_norm"] if rows else float("nan")
    lines.append(f"\n{n:,} items; F16 baseline acc_norm {base:.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
