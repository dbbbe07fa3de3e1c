"""The summary's pure parts: the Q score, wall time credited to pairs, Study B's columns, and
--compare."""

from __future__ import annotations

import pytest

from quantgate.configuration.registry import QScoreWeights
from quantgate.report.changes import compare_rows
from quantgate.report.tables import PairSummary, build_tables, q_score


def test_q_score_follows_the_study_formula():
    s = PairSummary("m", "Q4_K_M", scores={"hellaswag": 0.5, "truthfulqa_mc2": 0.4, "arc": 0.9})
    s.ppl, s.tg_tps = 10.0, 50.0
    w = QScoreWeights()
    # 0.8 * (0.7 * 50 + 0.5 * 40) - 0.7 * 10 + 0.2 * 50; arc has no weight, ifeval was not run
    assert q_score(s, w) == pytest.approx(0.8 * (35 + 20) - 7 + 10)
    s.tg_tps = None
    assert q_score(s, w) is None


def test_wall_time_is_credited_to_the_judged_pair_each_test_id_starts_with(tmp_path):
    """Test ids carry a benchmark or workload suffix; an id naming no judged pair (a project
    test's bracket) is dropped, wherever its file lives (rows.bracket_of reads any bracket)."""
    from quantgate.report.rows import bracket_of, write_summary

    rows = [
        {"pair": p, "model": "smollm2", "compression": p[8:], "gate": "kld", "metric": "kld_mean"}
        for p in ("smollm2-Q8_0", "smollm2-Q8_0-x", "smollm2-noise_floor")
    ]
    wall = {}
    for nodeid, seconds in [
        ("tests/test_retention.py::test_retention[smollm2-Q8_0-hellaswag]", 2.0),
        ("elsewhere/test_speed.py::test_throughput[smollm2-Q8_0-tg]", 1.5),
        ("tests/test_retention.py::test_retention[smollm2-Q8_0-x-winogrande]", 4.0),
        ("tests/unit/test_stats.py::test_bounds[0.5-strict]", 9.0),
        ("tests/test_noise_floor.py::test_noise_floor", 3.0),
        # a noise floor's id is its model key; its rows' pair is <model>-noise_floor
        ("tests/test_noise_floor.py::test_noise_floor[smollm2]", 7.0),
    ]:
        if (bracket := bracket_of(nodeid)) is not None:
            wall[bracket] = wall.get(bracket, 0.0) + seconds
    doc = write_summary(tmp_path / "summary.json", rows, wall)
    assert doc["wall_seconds"] == {
        "smollm2-Q8_0": 3.5,
        "smollm2-Q8_0-x": 4.0,
        "smollm2-noise_floor": 7.0,
    }


def test_study_b_columns_render_from_the_footprint_rows():
    """Compression ratio, peak memory (VRAM where measured, else RSS), evaluation time and,
    where a pair read its weights, the share of zeros: Study B's table beside the rest."""
    from quantgate.report.summary_md import render_markdown

    def row(compression, metric, value, **extra):
        pair = f"m-{compression}"
        return {"model": "m", "compression": compression, "pair": pair, "gate": "footprint",
                "metric": metric, "value": value, "verdict": "pass", **extra}  # fmt: skip

    rows = [
        row(
            "sparse",
            "size_ratio",
            0.25,
            file_size_bytes=2**20,
            baseline_file_size_bytes=2**22,
            peak_rss_mib=900.0,
            peak_vram_mib=300.0,
            baseline_peak_rss_mib=950.0,
            baseline_peak_vram_mib=1200.0,
        ),
        row("sparse", "weight_sparsity_pct", 50.0),
    ]
    tables = build_tables(rows, QScoreWeights(), {"m-sparse": 42.4})
    base, sparse = tables["m"]
    assert (sparse.compression_ratio(base), sparse.peak_memory_mib) == (4.0, 300.0)
    assert (base.peak_memory_mib, base.peak_memory_kind) == (1200.0, "VRAM")
    md = render_markdown(tables, QScoreWeights(), None).splitlines()

    def cells(start: str) -> list[str]:
        return [c.strip() for c in next(x for x in md if x.startswith(start)).split("|")[1:-1]]

    line = dict(zip(cells("| compression |"), cells("| sparse |"), strict=True))
    assert line["compression ratio"] == "4.00×"
    assert line["peak memory MiB"] == "300 (VRAM)"
    assert line["zero weights %"] == "50" and line["eval s"] == "42"


def test_compare_lists_changed_values_and_verdicts():
    row = {"pair": "m-Q", "metric": "kld_mean", "value": 0.1, "verdict": "pass"}
    same = compare_rows([row], [dict(row)])
    assert same == []
    (change,) = compare_rows([row], [row | {"value": 0.3, "verdict": "FAIL"}])
    assert (change.before, change.after, change.verdict_changed) == (0.1, 0.3, True)
    (gone,) = compare_rows([row], [])
    assert gone.after is None


def test_underpowered_gates_are_one_line_each_and_the_machine_heads_the_page():
    from quantgate.report.collector import underpowered_lines
    from quantgate.report.render import machine_lines

    row = {
        "pair": "smollm2-Q8_0",
        "metric": "D_winogrande",
        "direction": "max",
        "minimum_detectable": 46.81,
        "threshold": 10.0,
        "threshold_origin": "smollm2.yaml:defaults",
        "mode": "ci",
    }
    rows = [
        {**row, "underpowered": True},
        {**row, "metric": "top1_agreement_pct", "direction": "min", "threshold": 80.0}
        | {"underpowered": True, "minimum_detectable": 61.0},
        {**row, "metric": "kld_mean", "underpowered": False},
    ]
    assert underpowered_lines(rows) == [
        "UNDERPOWERED smollm2-Q8_0 D_winogrande: the smallest loss it detects (80 % power) is "
        "46.8, bound <= 10 (smollm2.yaml:defaults, mode ci)",
        "UNDERPOWERED smollm2-Q8_0 top1_agreement_pct: the smallest loss it detects (80 % power) "
        "is 61, bound >= 80 (smollm2.yaml:defaults, mode ci)",
    ]
    machine = {
        "cpu": "AMD EPYC",
        "arch": "x86_64",
        "cores": 2,
        "threads": 2,
        "cpu_flags": ["avx2"],
        "llama_cpp_system_info": "CPU : AVX2 = 1 |",
        "llama_cpp_placement": "default",
        "gpus": [],
    }
    one, *rest = machine_lines({"": machine, "shard 2/2": machine})
    assert one == (
        "Made on: AMD EPYC (x86_64); 2 cores; threads: 2; flags: avx2; llama.cpp weights: "
        "default; no GPU; llama.cpp: CPU : AVX2 = 1 |"
    )
    assert rest[0].startswith("Made on (shard 2/2): AMD EPYC")
