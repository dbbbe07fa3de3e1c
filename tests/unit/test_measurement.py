"""Measurements from evaluator results (quantgate.measurement): pure, no model. The real
model's are checked number for number by the golden smoke run (test_summary_report)."""

from __future__ import annotations

import pytest

from quantgate import measurement
from quantgate.retention import BenchmarkResult, Comparison

FACTS = {
    "file_size_bytes": 50,
    "baseline_file_size_bytes": 200,
    "size_measured_as": "file",
    "load_seconds": 0.123,
    "bits_per_weight": 4.5,
    "baseline_bits_per_weight": 16.0,
    "peak_rss_mib": 120.0,
    "baseline_peak_rss_mib": 300.0,
    "peak_vram_mib": None,
    "baseline_peak_vram_mib": None,
    "sparsity": None,
}


def _result(scores: list[float]) -> BenchmarkResult:
    items = [
        {"doc_id": i, "target": 0, "acc": s, "loglikelihoods": [-1.0, -2.0 + s]}
        for i, s in enumerate(scores)
    ]
    return BenchmarkResult("b", "t", "acc", sum(scores) / len(scores), len(items), items)


def test_footprint_gates_size_and_rss_and_vram_and_zeros_only_where_measured():
    cpu = measurement.footprint(FACTS)
    assert cpu.values == {"size_ratio": 0.25, "peak_rss_mib": 120.0}
    assert cpu.baselines == {"size_ratio": 1.0, "peak_rss_mib": 300.0}
    assert "peak_vram_mib" in cpu.responsible and "peak_vram_mib" in cpu.not_measured_here
    assert ("load_seconds", "0.12") in cpu.properties and cpu.extra["size_ratio"] is FACTS
    gpu = measurement.footprint(
        FACTS
        | {"peak_vram_mib": 80.0, "baseline_peak_vram_mib": 160.0}
        | {"sparsity": {"weight_sparsity_pct": 50.0, "weight_2of4_pct": 100.0}}
    )
    assert gpu.values["peak_vram_mib"] == 80.0 and gpu.baselines["peak_vram_mib"] == 160.0
    assert gpu.values["weight_2of4_pct"] == 100.0


def test_throughput_is_a_ratio_to_the_baseline_measured_beside_it():
    m = measurement.throughput("tg", 50.0, 100.0, {128: 52.0, 256: 48.0})
    assert m.gate == "throughput" and m.values == {"tg_tps_ratio": 0.5}
    assert m.baselines == {"tg_tps_ratio": 100.0}
    assert m.extra["tg_tps_ratio"]["tokens_per_s_by_length"] == {128: 52.0, 256: 48.0}
    assert m.properties == [("tg_tokens_per_s", "50.0")]


def test_retention_pairs_the_items_and_a_pinned_baseline_measures_only_d():
    base, comp = _result([1, 1, 1, 0]), _result([1, 0, 1, 0])
    paired = measurement.retention(Comparison("b", base.score, comp, base))
    assert paired.values["D_b"] == pytest.approx(100 / 3)
    assert paired.values["flips_b"] == 25.0 and "D_b" in paired.intervals
    assert paired.extra["D_b"]["correct_to_wrong"] == 1 and not paired.not_measured_here
    assert ("b.items", 4) in paired.properties
    pinned = measurement.retention(Comparison("b", 0.75, comp))
    assert set(pinned.values) == {"D_b"} and "D_b" in pinned.intervals  # the variant's items
    assert set(pinned.not_measured_here) == {
        "flips_b",
        "Dgold_b",
        "choice_kld_b",
        "answers_changed_b",
    }


def _generated(answers: list[str], scores: list[float]) -> BenchmarkResult:
    """A generation task's records: no log-likelihoods, each item's filtered answer."""
    items = [
        {"doc_id": i, "target": "7", "loglikelihoods": [], "answer": a, "exact_match": s}
        for i, (a, s) in enumerate(zip(answers, scores, strict=True))
    ]
    score = sum(scores) / len(scores)
    return BenchmarkResult("g", "t", "exact_match", score, len(items), items)


def test_a_generation_task_measures_how_many_answers_changed_with_an_exact_interval():
    base = _generated(["7", "[invalid]", "12", "3"], [1, 0, 0, 0])
    comp = _generated(["7", "[invalid]", "13", "4"], [1, 0, 0, 0])
    m = measurement.retention(Comparison("g", base.score, comp, base))
    assert m.values["answers_changed_g"] == 50.0  # "[invalid]" twice is the same answer
    low, high = m.intervals["answers_changed_g"].low, m.intervals["answers_changed_g"].high
    assert 0 < low < 50 < high < 100  # Clopper-Pearson on 2 of 4
    assert m.extra["answers_changed_g"] == {"answers_changed": 2, "n_items": 4}
    assert m.values["D_g"] == 0.0 and m.values["flips_g"] == 0.0
    # multiple-choice items carry no answer: no such metric
    mc = _result([1, 0])
    assert "answers_changed_b" not in measurement.retention(Comparison("b", 0.5, mc, mc)).values


def test_d_against_a_zero_baseline_is_undefined_and_says_what_to_gate_instead():
    base = _generated(["1", "2", "3"], [0, 0, 0])
    comp = _generated(["1", "5", "6"], [0, 0, 0])
    m = measurement.retention(Comparison("g", 0.0, comp, base))
    assert "D_g" not in m.values and "D_g" not in m.intervals
    assert "the baseline scored 0 on t exact_match" in m.undefined["D_g"]
    assert "gate answers_changed_g instead" in m.undefined["D_g"]
    assert m.values["answers_changed_g"] == pytest.approx(200 / 3)
    overall = measurement.retention_overall([Comparison("g", 0.0, comp, base)])
    assert overall.values == {} and "D_overall" in overall.undefined


def test_d_overall_is_the_mean_of_the_benchmarks_d():
    base = _result([1, 1, 1, 0])
    halves = [Comparison("b", base.score, _result(s), base) for s in ([1, 1, 1, 0], [1, 0, 1, 0])]
    m = measurement.retention_overall(halves)
    assert m.values == {"D_overall": pytest.approx(100 / 6)} and "D_overall" in m.intervals
