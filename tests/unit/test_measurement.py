"""Measurements from evaluator results (quantgate.verdicts.measurement): pure, no model. The real
model's are checked number for number by the golden smoke run (test_summary_report)."""

from __future__ import annotations

import math

import pytest

from quantgate.errors import EvaluationError
from quantgate.evaluation.comparison import BenchmarkResult, Comparison
from quantgate.verdicts import measurement

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


def _quality(kld: list[float], dnll: list[float]):
    from quantgate.evaluation.quality import QualityResult

    n, per = len(kld), 4
    base_nll = [3.0] * n
    return QualityResult(
        ppl=math.exp(3.0 + sum(dnll) / n),
        ppl_baseline=math.exp(3.0),
        n_scored=n * per,
        n_chunks=n,
        kld_mean=sum(kld) / n,
        kld_p99=max(kld),
        top1_agreement_pct=90.0,
        chunk_nll=[b + d for b, d in zip(base_nll, dnll, strict=True)],
        chunk_nll_baseline=base_nll,
        chunk_kld=kld,
        chunk_top1=[90.0] * n,
        token_kld=[k for k in kld for _ in range(per)],
    )


def test_chunk_batches_join_into_one_result_and_sequential_looks_judge_the_chunk_means():
    from quantgate.evaluation.quality import joined, sequential_looks

    a, b = _quality([0.01, 0.02], [0.01, 0.0]), _quality([0.03] * 8, [0.02] * 8)
    both = joined([a, b])
    assert both.n_chunks == 10 and both.n_scored == 40
    assert both.kld_mean == pytest.approx(0.027) and both.chunk_kld[:2] == [0.01, 0.02]
    assert both.ppl / both.ppl_baseline == pytest.approx(math.exp(0.17 / 10))
    looks = sequential_looks(both, 500, {"ppl_increase_pct": 10.0, "kld_mean": 0.01})
    # ppl: every NLL difference far below ln 1.1 = 0.095, in % again at the stop
    assert looks["ppl_increase_pct"].decision == "pass"
    assert looks["ppl_increase_pct"].estimate == pytest.approx(
        (both.ppl / both.ppl_baseline - 1) * 100
    )
    assert looks["kld_mean"].decision == "fail" and looks["kld_mean"].low > 0.01
    with pytest.raises(EvaluationError, match="zero chunks"):
        joined([])


def test_a_sequential_quality_result_is_judged_on_its_decisions_and_reports_the_stop():
    from dataclasses import replace

    from quantgate.evaluation.quality import sequential_looks

    result = _quality([0.3] * 16, [0.001] * 16)
    looks = sequential_looks(result, 560, {"kld_mean": 0.1, "ppl_increase_pct": 10.0})
    m = measurement.kld(replace(result, sequential=looks))
    assert m.decisions == {"kld_mean": "fail"}
    assert m.intervals["kld_mean"].low == looks["kld_mean"].low > 0.1
    seq = m.extra["kld_mean"]["sequential"]
    assert seq["items_used"] == 16 and seq["items_available"] == 560 and seq["stop"] == "fail"
    assert "16 of 560 chunks" in seq["reason"]
    assert ("kld_mean.chunks_available", 560) in m.properties
    p = measurement.perplexity(replace(result, sequential=looks))
    assert p.decisions == {"ppl_increase_pct": "pass"} and "ln_ppl_ratio" not in p.decisions
    assert p.extra["ppl_increase_pct"]["ppl"] == result.ppl  # the PPL row keeps its fields
