"""The study-style table: per model, one row per compression (and the baseline), from the rows
of reports/summary.json. Pure: no pytest, no plotting; the HTML and markdown reports render it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quantgate.configuration.constants import FLIPS_PREFIX, OVERALL, RETENTION_PREFIX
from quantgate.configuration.registry import QScoreWeights

BASELINE = "baseline"


@dataclass(frozen=True)
class Cell:
    """One gated number as the report shows it."""

    value: float
    low: float | None = None
    high: float | None = None
    verdict: str = "not gated"
    threshold: float | None = None
    expect: str = "pass"

    @property
    def failed(self) -> bool:
        return self.verdict == "FAIL"

    @classmethod
    def of(cls, row: dict[str, Any]) -> Cell:
        return cls(
            row["value"],
            row.get("ci_low"),
            row.get("ci_high"),
            row["verdict"],
            row.get("threshold"),
            row.get("expect", "pass"),
        )


@dataclass
class PairSummary:
    """Everything the reports show about one compression of one model (or its baseline)."""

    model: str
    compression: str
    canary: bool = False
    #: the baseline against itself (tests/test_noise_floor.py): a reference, not a verdict
    noise_floor: bool = False
    n_blocks: int | None = None
    #: blocks removed by pruning (indices in the unpruned model), where the pair was pruned
    pruned_blocks: list[int] | None = None
    size_bytes: int | None = None
    bits_per_weight: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    n_items: dict[str, int] = field(default_factory=dict)
    d: dict[str, Cell] = field(default_factory=dict)
    flips: dict[str, Cell] = field(default_factory=dict)
    cells: dict[str, Cell] = field(default_factory=dict)
    ppl: float | None = None
    #: Study B's columns: peak memory of a process serving the pair (VRAM on a GPU, else RSS),
    #: the wall time of its evaluation (summary.json's wall_seconds), its weights' sparsity
    peak_memory_mib: float | None = None
    peak_memory_kind: str | None = None
    eval_seconds: float | None = None
    sparsity_pct: float | None = None
    tg_tps: float | None = None
    pp_tps: float | None = None
    q: float | None = None
    #: every row of this pair by metric (the per-gate table and the noise-floor lookup)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: where the baseline's weights came from (source file type, conversion)
    provenance: dict[str, Any] | None = None
    #: the warning when this variant has the type the baseline was converted from
    source_type_match: str | None = None
    #: the commit a prebuilt variant's Hub source resolved to
    hub_commit: str | None = None

    @property
    def is_baseline(self) -> bool:
        return self.compression == BASELINE

    def compression_ratio(self, baseline: PairSummary) -> float | None:
        """Study B's compression ratio: the baseline's bytes over this pair's (1 for the
        baseline; file bytes, or loaded weights for a load-time quantization)."""
        if not self.size_bytes or not baseline.size_bytes:
            return None
        return baseline.size_bytes / self.size_bytes

    @property
    def failed_cells(self) -> list[str]:
        every = {**self.cells, **{f"D_{k}": v for k, v in self.d.items()}}
        every |= {f"flips_{k}": v for k, v in self.flips.items()}
        return sorted(name for name, c in every.items() if c.failed)

    @property
    def verdict(self) -> str:
        if self.is_baseline:
            return "baseline"
        if self.noise_floor:
            return "reference"
        failed = self.failed_cells
        if not failed:
            return "pass"
        return "FAIL (canary, expected)" if self.canary else "FAIL"


def build_tables(
    rows: list[dict[str, Any]],
    weights: QScoreWeights,
    wall_seconds: dict[str, float] | None = None,
) -> dict[str, list[PairSummary]]:
    """Per model: the baseline's row, then one row per compression (most bits first).
    ``wall_seconds``: summary.json's evaluation time per pair id."""
    by_model: dict[str, dict[str, PairSummary]] = {}
    for row in rows:
        model = by_model.setdefault(row["model"], {})
        base = model.setdefault(BASELINE, PairSummary(row["model"], BASELINE))
        pair = model.setdefault(row["compression"], PairSummary(row["model"], row["compression"]))
        pair.canary = pair.canary or row.get("expect") == "fail"
        pair.noise_floor = pair.noise_floor or row.get("role") == "noise_floor"
        _absorb(pair, base if not pair.noise_floor else PairSummary("", ""), row)
        pair.rows[row["metric"]] = row
        pair.source_type_match = pair.source_type_match or row.get("source_type_match")
        pair.hub_commit = pair.hub_commit or row.get("variant_hub_commit")
        if wall_seconds and row.get("pair") in wall_seconds:
            pair.eval_seconds = wall_seconds[row["pair"]]
        base.provenance = base.provenance or row.get("baseline_provenance")
    tables = {}
    for key, model in by_model.items():
        # the study's order: baseline, the noise floor (the reference the variants are read
        # from), then the variants from most to fewest bits per weight
        summaries = sorted(
            model.values(),
            key=lambda s: (
                0 if s.is_baseline else 1 if s.noise_floor else 2,
                -(s.bits_per_weight or 0.0),
                s.compression,
            ),
        )
        used = q_benchmarks(summaries, weights)
        for s in summaries:
            # Q compares variants of a model: only over the benchmarks every scored row has
            s.q = q_score(s, weights) if all(b in s.scores for b in used) else None
        tables[key] = summaries
    return tables


def _absorb(pair: PairSummary, base: PairSummary, row: dict[str, Any]) -> None:
    metric = row["metric"]
    cell = Cell.of(row)
    if metric.startswith(RETENTION_PREFIX):
        bench = metric.removeprefix(RETENTION_PREFIX)
        pair.d[bench] = cell
        if bench != OVERALL and "score" in row:
            pair.scores[bench] = row["score"]
            pair.n_items[bench] = row.get("n_items", 0)
            if row.get("baseline") is not None:
                base.scores[bench] = row["baseline"]
                base.n_items[bench] = row.get("n_items", 0)
        return
    if metric.startswith(FLIPS_PREFIX):
        pair.flips[metric.removeprefix(FLIPS_PREFIX)] = cell
        return
    pair.cells[metric] = cell
    if metric == "weight_sparsity_pct":
        pair.sparsity_pct = cell.value
    elif metric == "ppl_increase_pct":
        pair.ppl = row.get("ppl")
        base.ppl = row.get("ppl_baseline", base.ppl)
    elif metric in ("tg_tps_ratio", "pp_tps_ratio"):
        kind = metric[:2]
        setattr(pair, f"{kind}_tps", row.get("tokens_per_s"))
        setattr(base, f"{kind}_tps", row.get("baseline"))
    elif metric == "size_ratio":
        pair.size_bytes = row.get("file_size_bytes")
        pair.bits_per_weight = row.get("bits_per_weight")
        pair.n_blocks = row.get("n_blocks")
        pair.pruned_blocks = row.get("pruned_blocks")
        for summary, prefix in ((pair, ""), (base, "baseline_")):
            vram, rss = row.get(f"{prefix}peak_vram_mib"), row.get(f"{prefix}peak_rss_mib")
            if vram is not None or rss is not None:
                summary.peak_memory_mib = vram if vram is not None else rss
                summary.peak_memory_kind = "VRAM" if vram is not None else "RSS"
        base.size_bytes = row.get("baseline_file_size_bytes", base.size_bytes)
        base.bits_per_weight = row.get("baseline_bits_per_weight", base.bits_per_weight)


def q_score(s: PairSummary, weights: QScoreWeights) -> float | None:
    """Q = w_B * sum_i w_i * B_i - w_PPL * PPL + w_TPS * TPS (B_i in %, TPS generation tok/s);
    None without a PPL or a TPS. Benchmarks not run drop out of the sum (see q_benchmarks)."""
    if s.ppl is None or s.tg_tps is None:
        return None
    b = sum(w * s.scores[n] * 100.0 for n, w in weights.benchmarks.items() if n in s.scores)
    return weights.w_B * b - weights.w_PPL * s.ppl + weights.w_TPS * s.tg_tps


def q_benchmarks(summaries: list[PairSummary], weights: QScoreWeights) -> list[str]:
    """The weighted benchmarks a model's Q uses: those its baseline was scored on."""
    have = {b for s in summaries if s.is_baseline for b in s.scores}
    return [b for b in weights.benchmarks if b in have]


def benchmark_names(summaries: list[PairSummary]) -> list[str]:
    seen: dict[str, None] = {}
    for s in summaries:
        seen |= dict.fromkeys(b for b in (*s.scores, *s.d) if b != OVERALL)
    return list(seen)


@dataclass(frozen=True)
class GateLine:
    """One gated metric of one variant, with what the reader needs to trust its verdict: the
    machine's own noise on it (the baseline against itself) and the smallest loss the sample
    can see."""

    compression: str
    metric: str
    cell: Cell
    mode: str | None
    noise_floor: Cell | None
    minimum_detectable: float | None
    underpowered: bool
    unit: str


def gate_lines(summaries: list[PairSummary]) -> list[GateLine]:
    """Every gated metric of every variant of one model, in table order."""
    floor = next((s for s in summaries if s.noise_floor), None)
    out = []
    for s in summaries:
        if s.is_baseline or s.noise_floor:
            continue
        for metric, row in sorted(s.rows.items(), key=lambda kv: (kv[1]["gate"], kv[0])):
            if row.get("threshold") is None:
                continue
            noise = floor.rows.get(metric) if floor is not None else None
            out.append(
                GateLine(
                    s.compression,
                    metric,
                    Cell.of(row),
                    row.get("mode"),
                    Cell.of(noise) if noise is not None else None,
                    row.get("minimum_detectable"),
                    bool(row.get("underpowered")),
                    row.get("unit", ""),
                )
            )
    return out
