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
from quantgate.configuration.registry import ThroughputSettings
from quantgate.errors import EvaluationError


def random_tokens(n_vocab: int, n: int, seed: int) -> list[int]:
    """Random ids, as llama-bench feeds (content does not change the cost of a forward pass)."""
    return [int(t) for t in np.random.default_rng(seed).integers(0, n_vocab, n)]


@dataclass(frozen=True)
class Workload:
    """One timed unit: the callable, and how many tokens one call processes.

    ``times_by_length``: for tg at several lengths (Study A's TPS, llama-bench -n 128,256,512),
    each call runs every length from an empty context and times each one here; its tokens/s is
    then the mean over lengths of each length's tokens/s, as the study averaged llama-bench's
    rows, not the tokens of all lengths over their summed time."""

    kind: str  # "pp" or "tg"
    n_tokens: int
    run: Callable[[], None]
    times_by_length: dict[int, list[float]] | None = None

    def tokens_per_second(self, rounds: int, mean_call_seconds: float) -> float:
        """Over the last ``rounds`` calls, whose mean wall time was ``mean_call_seconds``."""
        if self.times_by_length is None:
            return self.n_tokens / _positive(self.kind, mean_call_seconds)
        return float(np.mean(list(self.rates_by_length(rounds).values())))

    def rates_by_length(self, rounds: int) -> dict[int, float]:
        """Each length's tokens/s over the last ``rounds`` calls ({} for one length)."""
        return {
            n: n / _positive(f"{self.kind}{n}", float(np.mean(times[-rounds:])))
            for n, times in (self.times_by_length or {}).items()
        }


def _positive(kind: str, seconds: float) -> float:
    if not seconds > 0:
        raise EvaluationError(f"{kind}: timing gave {seconds} s; the timer is broken")
    return seconds


def workloads(backend: Backend, settings: ThroughputSettings, seed: int) -> dict[str, Workload]:
    prompt = random_tokens(backend.n_vocab, settings.n_prompt, seed)
    pp = Workload("pp", settings.n_prompt, lambda: backend.process_prompt(prompt))
    lengths = settings.gen_lengths
    if len(lengths) == 1:
        gen = random_tokens(backend.n_vocab, lengths[0], seed + 1)
        return {"pp": pp, "tg": Workload("tg", lengths[0], lambda: backend.decode_one_by_one(gen))}
    gens = {n: random_tokens(backend.n_vocab, n, seed + 1) for n in lengths}
    times: dict[int, list[float]] = {n: [] for n in lengths}

    def every_length() -> None:
        for n, tokens in gens.items():
            start = time.perf_counter()
            backend.decode_one_by_one(tokens)
            times[n].append(time.perf_counter() - start)

    return {"pp": pp, "tg": Workload("tg", sum(lengths), every_length, times)}


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
    return workload.tokens_per_second(settings.rounds, float(np.mean(times)))


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
        return self.workload.tokens_per_second(rounds, float(np.mean(self.times[-rounds:])))


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
    rate = variant.tokens_per_second(settings.rounds, float(np.mean(times)))
    return base.tokens_per_second(settings.rounds), rate
