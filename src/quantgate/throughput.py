"""Tokens/s the llama-bench way, and the memory a variant needs.

llama-bench (tools/llama-bench/llama-bench.cpp) times ``pp N`` as one prompt of N random
tokens from an empty context, and ``tg N`` as N single-token decodes from an empty context,
tokens/s = N / mean time. The same protocol runs here, for the baseline and each variant in the
same session, so the gate compares ratios measured under the same machine load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from quantgate.backends.base import Backend
from quantgate.errors import EvaluationError
from quantgate.registry import ThroughputSettings


def random_tokens(n_vocab: int, n: int, seed: int) -> list[int]:
    """Random ids, as llama-bench feeds (content does not change the cost of a forward pass)."""
    return [int(t) for t in np.random.default_rng(seed).integers(0, n_vocab, n)]


@dataclass(frozen=True)
class Workload:
    """One timed unit: the callable, and how many tokens one call processes."""

    kind: str  # "pp" or "tg"
    n_tokens: int
    run: Callable[[], None]


def workloads(backend: Backend, settings: ThroughputSettings, seed: int) -> dict[str, Workload]:
    prompt = random_tokens(backend.n_vocab, settings.n_prompt, seed)
    gen = random_tokens(backend.n_vocab, settings.n_gen, seed + 1)
    return {
        "pp": Workload("pp", settings.n_prompt, lambda: backend.process_prompt(prompt)),
        "tg": Workload("tg", settings.n_gen, lambda: backend.decode_one_by_one(gen)),
    }


def tokens_per_second(workload: Workload, settings: ThroughputSettings) -> float:
    """Mean-time tokens/s over ``settings.rounds`` after warm-up (no pytest-benchmark: used for
    the baseline, measured in the same session as the variants)."""
    for _ in range(settings.warmup_rounds):
        workload.run()
    times = []
    for _ in range(settings.rounds):
        start = time.perf_counter()
        workload.run()
        times.append(time.perf_counter() - start)
    mean = float(np.mean(times))
    if not mean > 0:
        raise EvaluationError(f"{workload.kind}: timing gave {mean} s; the timer is broken")
    return workload.n_tokens / mean


class BaselineRounds:
    """Times one baseline round right before each variant round, as pytest-benchmark's
    ``setup`` hook (untimed for the variant): baseline and variant alternate, so a neighbour's
    load that comes and goes within seconds hits both alike (seen here: with the baseline timed
    a few seconds before the variant, a concurrent pip install made Q8_0's tg ratio read 0.51
    where it is 1.1 on a quiet machine)."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.times: list[float] = []

    def __call__(self) -> None:
        start = time.perf_counter()
        self.workload.run()
        self.times.append(time.perf_counter() - start)

    def tokens_per_second(self, rounds: int) -> float:
        """Over the last ``rounds`` calls (the earlier ones were warm-up rounds)."""
        mean = float(np.mean(self.times[-rounds:]))
        if not mean > 0:
            raise EvaluationError(f"baseline {self.workload.kind}: timing gave {mean} s")
        return self.workload.n_tokens / mean


def interleaved_tokens_per_second(
    baseline: Workload, variant: Workload, settings: ThroughputSettings
) -> tuple[float, float]:
    """(baseline, variant) tokens/s, rounds alternating, without pytest-benchmark (xdist or
    --benchmark-disable)."""
    base = BaselineRounds(baseline)
    times = []
    for i in range(settings.warmup_rounds + settings.rounds):
        base()
        start = time.perf_counter()
        variant.run()
        if i >= settings.warmup_rounds:
            times.append(time.perf_counter() - start)
    return base.tokens_per_second(settings.rounds), variant.n_tokens / float(np.mean(times))
