"""Tokens the lm-eval model evaluates per HellaSwag item with KV-cache reuse, against the naive
4 × (context + ending) of scoring each choice from scratch.

    .venv/bin/python benchmarks/kv_reuse_ratio.py [--items 40]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lm_eval.tasks.hellaswag.utils import preprocess

from quantgate.lm_eval_model import LlamaCppLM
from quantgate.registry import load_registry
from quantgate.session import GateSession
from quantgate.thresholds import Thresholds

REPO = Path(__file__).resolve().parents[1]


class _Request:
    def __init__(self, *args: str) -> None:
        self.args = args


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=40)
    opts = ap.parse_args()
    registry = load_registry(REPO / "fixtures" / "models.yaml")
    session = GateSession(registry, Thresholds(REPO / "thresholds", registry))
    lm = LlamaCppLM(backend=session.baseline_backend("smollm2"))
    data = REPO / "fixtures" / "data" / "hellaswag" / "hellaswag_val_first100.jsonl"
    docs = [json.loads(line) for line in data.read_text().splitlines()[: opts.items]]
    requests, naive = [], 0
    for doc in docs:
        query = preprocess(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"])
        for ending in doc["endings"]:
            requests.append(_Request(query, " " + preprocess(ending)))
            ctx, cont = lm._encode_pair(query, " " + preprocess(ending))
            naive += len(ctx) + len(cont) - 1  # a full pass scores ctx + cont[:-1]
    start = time.perf_counter()
    lm.loglikelihood(requests, disable_tqdm=True)
    seconds = time.perf_counter() - start
    used = lm.backend.tokens_evaluated
    print("| items | tokens evaluated | naive 4 x (context + ending) | ratio | wall time |")
    print("|---|---|---|---|---|")
    print(
        f"| {len(docs)} | {used} ({used / len(docs):.0f}/item) | {naive} "
        f"({naive / len(docs):.0f}/item) | {used / naive:.2f} | {seconds:.1f} s |"
    )
    session.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
