"""The sequential gate's error rate and its savings, by simulation (numpy, no model): 1,000
random orders of a HellaSwag-sized item set (10,042 items) whose retention loss D is exactly
the 5 % threshold, looked at after every batch. The betting confidence sequence
(quantgate.verdicts.sequential) should stop on the fail side at most α/2 = 2.5 % of the time; naive
peeking at the fixed-sample 95 % interval after each batch, at the same schedule, is shown
for contrast. Then the items a clear case needs before it stops. Last, the asymptotic
sequence mode sequential uses over chunks (PPL increase, mean KLD), at a WikiText-2-sized
text's sizes, on four shapes of per-chunk values.

    .venv/bin/python benchmarks/sequential_null.py [--runs 1000] [--orders 200]
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from scipy.stats import norm

from quantgate.verdicts.sequential import first_mean_decisions, log_capitals, sequential_retention

N, THRESHOLD, ALPHA = 10_042, 5.0, 0.05
#: the interval's resolution does not change where the gate stops: a coarse one is faster
GRID = np.linspace(-100, 100, 41)


def population(both: int, baseline_only: int, compressed_only: int):
    b, c = np.zeros(N), np.zeros(N)
    b[: both + baseline_only] = 1
    c[:both] = 1
    c[both + baseline_only : both + baseline_only + compressed_only] = 1
    return b, c


def _first(hit):
    return np.where(hit.any(axis=1), hit.argmax(axis=1), hit.shape[1])


def false_fail_rates(runs: int, batch: int, seed: int = 0) -> tuple[float, float]:
    b, c = population(4_100, 400, 175)  # 4,500 vs 4,275 correct: D = 5.000 %
    rng = np.random.default_rng(seed)
    looks = np.arange(batch, N + 1, batch)
    bar, q = math.log(2 / ALPHA), norm.ppf(1 - ALPHA / 2)
    betting = naive = 0
    for start in range(0, runs, 100):
        order = np.array([rng.permutation(N) for _ in range(min(100, runs - start))])
        z = b[order] * (1 - THRESHOLD / 100) - c[order]
        above, below = log_capitals((z + 1) / 2, N, 0.5, ALPHA)
        betting += int(
            np.sum(_first(above[:, looks - 1] >= bar) < _first(below[:, looks - 1] >= bar))
        )
        total = np.cumsum(z, axis=1)[:, looks - 1]
        squares = np.cumsum(z * z, axis=1)[:, looks - 1]
        mean = total / looks
        se = np.sqrt((squares / looks - mean**2) / (looks - 1))
        naive += int(np.sum(_first(mean - q * se > 0) < _first(mean + q * se < 0)))
    return betting / runs, naive / runs


CASES = {
    # (both right, baseline only, compressed only): per-item flips as a variant of SmolLM2 shows
    "Q8_0-like (D 0 %, 3 % of items flip)": (4_350, 150, 150),
    "Q4_K_M-like (D 2 %, 9 % flip)": (4_050, 450, 360),
    "Q2_K-like (D 21 %, 18 % flip)": (3_500, 1_000, 50),
    "at the threshold (D 5 %)": (4_100, 400, 175),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000, help="random orders at the threshold")
    ap.add_argument("--orders", type=int, default=200, help="random orders per clear case")
    opts = ap.parse_args()
    runs, n_orders = opts.runs, opts.orders
    print(f"## {N:,} items, threshold D <= {THRESHOLD} %, alpha {ALPHA}\n")
    print("| batch | runs | betting: false fails | naive peeking: false fails | bound |")
    print("|---|---|---|---|---|")
    for batch in (100, 500):
        betting, naive = false_fail_rates(runs, batch)
        print(f"| {batch} | {runs} | {betting:.3f} | {naive:.3f} | {ALPHA / 2} |")
    print(
        f"\n| case | full-set D | verdict | items used: median of {n_orders} orders | 90th pct "
        "| verdict as full |"
    )
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    for name, split in CASES.items():
        b, c = population(*split)
        full = (1 - c.sum() / b.sum()) * 100
        used, agree, decisions = [], 0, set()
        for _ in range(n_orders):
            order = rng.permutation(N)
            v = sequential_retention(b[order], c[order], THRESHOLD, grid=GRID)
            used.append(v.n_used / N)
            decisions.add(v.decision)
            agree += (
                v.decision == ("pass" if full <= THRESHOLD else "fail") or v.decision == "exhausted"
            )
        print(
            f"| {name} | {full:.2f} | {'/'.join(sorted(decisions))} | {np.median(used):.1%} | "
            f"{np.quantile(used, 0.9):.1%} | {agree}/{n_orders} |"
        )
    chunk_table(runs)
    return 0


#: mode sequential over chunks: wiki.test.raw in SmolLM2's 512-token chunks (592), looks every 16
CHUNKS, CHUNK_BATCH = 592, 16
CHUNK_SHAPES = {
    "KLD-like (gamma, CV 0.3)": lambda rng: rng.gamma(11.0, 1.0, CHUNKS),
    "normal": lambda rng: rng.normal(size=CHUNKS),
    "t with 3 d.o.f.": lambda rng: rng.standard_t(3, CHUNKS),
    "lognormal, sigma 1 (heavy right skew)": lambda rng: rng.lognormal(0.0, 1.0, CHUNKS),
}


def chunk_decisions(pop: np.ndarray, rng: np.random.Generator, naive: bool, runs: int = 1000):
    """Per order, the first deciding look's decision about "mean <= pop.mean()" (so any
    decision excludes the truth): the asymptotic sequence, or the fixed-sample interval."""
    orders = np.array([rng.permutation(pop) for _ in range(runs)])
    z = norm.ppf(1 - ALPHA / 2) if naive else None
    return first_mean_decisions(orders, pop.mean(), CHUNK_BATCH, ALPHA, naive_z=z)


def chunk_table(runs: int = 1000) -> None:
    print(
        f"\n## over chunks: {CHUNKS} chunks, looks every {CHUNK_BATCH}, the mean at the bound, "
        f"{runs:,} orders (any decision excludes the truth)\n"
    )
    print("| per-chunk values | sequence: pass, fail | naive peeking: pass, fail |")
    print("|---|---|---|")
    for name, draw in CHUNK_SHAPES.items():
        rng = np.random.default_rng(7)
        pop = draw(rng)
        seq, naive = (chunk_decisions(pop, rng, n, runs) for n in (False, True))
        print(
            f"| {name} | {np.mean(seq == 'pass'):.3f}, {np.mean(seq == 'fail'):.3f} | "
            f"{np.mean(naive == 'pass'):.3f}, {np.mean(naive == 'fail'):.3f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
