"""The throughput protocol's arithmetic, on a fake backend and a fake clock (no timing: what
is checked is how times become tokens/s). Study A's TPS: tg at 128, 256 and 512 tokens from
an empty context, their tokens/s averaged, as the study averaged llama-bench's rows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from quantgate.configuration.registry import ThroughputSettings
from quantgate.evaluation import throughput

#: seconds a decode of N tokens takes on the fake backend: per-token cost grows with the
#: context, as it does on a real one
SECONDS = {64: 0.5, 128: 1.0, 256: 4.0, 512: 16.0}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeBackend:
    n_vocab = 1000

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.decoded: list[int] = []

    def process_prompt(self, tokens) -> None:
        self.clock.now += 0.25

    def decode_one_by_one(self, tokens) -> None:
        self.decoded.append(len(tokens))
        self.clock.now += SECONDS[len(tokens)]


@pytest.fixture
def backend(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(throughput.time, "perf_counter", clock)
    return FakeBackend(clock)


def test_one_length_is_llama_bench_tg(backend):
    settings = ThroughputSettings(n_gen=64, rounds=3, warmup_rounds=1)
    tg = throughput.workloads(backend, settings, seed=0)["tg"]
    assert tg.n_tokens == 64 and tg.times_by_length is None
    assert throughput.tokens_per_second(tg, settings) == 64 / 0.5
    assert backend.decoded == [64] * 4
    assert tg.rates_by_length(3) == {}


def test_several_lengths_average_each_lengths_rate(backend):
    settings = ThroughputSettings(n_gen=[128, 256, 512], rounds=2, warmup_rounds=1)
    tg = throughput.workloads(backend, settings, seed=0)["tg"]
    rate = throughput.tokens_per_second(tg, settings)
    # each round runs every length from an empty context, in order
    assert backend.decoded == [128, 256, 512] * 3
    assert tg.rates_by_length(2) == {128: 128.0, 256: 64.0, 512: 32.0}
    # the mean of the three rows (Study A), not 896 tokens over 21 s
    assert rate == pytest.approx((128 + 64 + 32) / 3)
    assert rate != pytest.approx(896 / 21)


def test_interleaved_rounds_judge_both_sides_by_the_same_rule(backend):
    settings = ThroughputSettings(n_gen=[128, 256], rounds=2, warmup_rounds=1)
    base = throughput.workloads(backend, settings, seed=0)["tg"]
    variant = throughput.workloads(backend, settings, seed=0)["tg"]
    baseline_rate, variant_rate = throughput.interleaved_tokens_per_second(base, variant, settings)
    assert baseline_rate == variant_rate == pytest.approx((128 + 64) / 2)
    assert backend.decoded == [128, 256] * 6


@pytest.mark.parametrize("n_gen", [[], [0, 128], [128, 128], 0])
def test_bad_lengths_are_refused(n_gen):
    with pytest.raises(ValidationError, match="n_gen"):
        ThroughputSettings(n_gen=n_gen)


def test_the_nightly_tier_measures_study_a_tps():
    from quantgate.configuration.registry import load_registry
    from support.helpers import REPO

    registry = load_registry(REPO / "fixtures" / "models.yaml")
    for model in ("llama31", "qwen25", "gemma2"):
        assert registry.evaluation_for(model).throughput.gen_lengths == (128, 256, 512)
    assert registry.evaluation_for("smollm2").throughput.gen_lengths == (64,)
