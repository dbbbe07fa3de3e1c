"""The cells and notes both summaries show (summary.md and summary.html): numbers, a gate's
cells, the footprint columns, the noise floor's and the provenance's notes."""

from __future__ import annotations

from quantgate.configuration.constants import RETENTION_PREFIX
from quantgate.report.tables import (
    Cell,
    GateLine,
    PairSummary,
    benchmark_names,
)


def num(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}g}"


def cell_text(c: Cell | None, digits: int = 3) -> str:
    if c is None:
        return "—"
    text = f"{c.value:.{digits}g}"
    if c.low is not None and c.high is not None:
        text += f" [{c.low:.{digits}g}, {c.high:.{digits}g}]"
    return text


def columns(summaries: list[PairSummary]) -> list[str]:
    return benchmark_names(summaries)


def size(s: PairSummary) -> str:
    return "—" if s.size_bytes is None else f"{s.size_bytes / 2**20:.1f}"


def shows_sparsity(summaries: list[PairSummary]) -> bool:
    """The zero-weights column is shown where a pair of the table measured it."""
    return any(s.sparsity_pct is not None for s in summaries)


def footprint_head(summaries: list[PairSummary]) -> list[str]:
    """Study B's footprint columns."""
    head = ["compression ratio", "peak memory MiB"]
    return head + (["zero weights %"] if shows_sparsity(summaries) else [])


def footprint_cells(s: PairSummary, summaries: list[PairSummary]) -> list[str]:
    base = next((b for b in summaries if b.is_baseline), s)
    ratio = s.compression_ratio(base)
    memory = "—"
    if s.peak_memory_mib is not None:
        memory = f"{s.peak_memory_mib:.0f} ({s.peak_memory_kind})"
    cells = ["—" if ratio is None else f"{ratio:.2f}×", memory]
    if shows_sparsity(summaries):
        cells.append(num(s.sparsity_pct, 3))
    return cells


def eval_time(s: PairSummary) -> str:
    return "—" if s.eval_seconds is None else f"{s.eval_seconds:.0f}"


def floor_note(summaries: list[PairSummary]) -> str | None:
    """The noise floor in words, and each variant's kld_mean threshold in units of it."""
    floor = next((s for s in summaries if s.noise_floor), None)
    if floor is None:
        return None
    parts = [f"Noise floor ({floor.compression.removeprefix('noise floor ').strip('()')})"]
    kld = floor.cells.get("kld_mean")
    if kld is not None:
        parts.append(f"self-KLD {kld.value:.3g} nats")
    if "ppl_increase_pct" in floor.cells:
        parts.append(f"self-ΔPPL {floor.cells['ppl_increase_pct'].value:.3g} %")
    parts += [f"self-flips {b} {c.value:.3g} %" for b, c in floor.flips.items()]
    text = ", ".join(parts) + "."
    if kld is not None and kld.value > 0:
        units = [
            f"{s.compression} {c.threshold / kld.value:.3g}×"
            for s in summaries
            if (c := s.cells.get("kld_mean")) is not None and c.threshold is not None
        ]
        if units:
            text += " kld_mean thresholds in units of the self-KLD: " + ", ".join(units) + "."
    elif kld is not None:
        text += " The self-KLD is exactly 0: the backend is bit-deterministic at this setting."
    return text


def provenance_note(summaries: list[PairSummary]) -> str | None:
    """Where the baseline came from, and which variants have the type it was converted from."""
    base = next((s for s in summaries if s.is_baseline), None)
    prov = base.provenance if base is not None else None
    if not prov:
        return None
    text = f"Baseline: from {prov.get('source')} (type {prov.get('source_type') or 'unknown'})"
    if prov.get("hub_commit"):
        text += f" at commit {prov['hub_commit'][:12]}"
    if prov.get("conversion"):
        text += f", converted {prov['conversion']}"
    text += "."
    commits = [f"{s.compression} {s.hub_commit[:12]}" for s in summaries if s.hub_commit]
    if commits:
        text += f" Hub commits of the prebuilt variants: {', '.join(commits)}."
    flagged = [s.compression for s in summaries if s.source_type_match]
    if flagged:
        text += (
            f" ⚠ {', '.join(flagged)}: the type the baseline was converted from; such a "
            "variant re-creates nearly the source's weights and reads as more lossless than it is."
        )
    return text


GATE_HEAD = [
    "compression",
    "metric",
    "value [95 % CI]",
    "threshold (mode)",
    "noise floor",
    "min. detectable",
    "verdict",
]


GATE_NOTE = (
    "Noise floor: the same metric for the baseline against itself with its arithmetic "
    "perturbed (tests/test_noise_floor.py); thresholds sit above it by design. Min. "
    "detectable: the smallest true value the gate fails with 80 % probability, from the "
    "measured interval; underpowered: it lies beyond twice the threshold (the sample cannot "
    "see a loss of that size: add items or gate a graded metric)."
)


def gate_cells(g: GateLine, markdown: bool) -> list[str]:
    c = g.cell
    op = "≥" if c.threshold is not None and is_lower_bound(g) else "≤"
    verdict = c.verdict + (" (canary, expected)" if c.expect == "fail" and c.failed else "")
    if g.underpowered:
        verdict += ", underpowered"
    if markdown and c.failed and c.expect != "fail":
        verdict = f"**{verdict}**"
    return [
        g.compression,
        g.metric,
        cell_text(c, 4),
        f"{op} {c.threshold:g} ({g.mode or 'point'})" if c.threshold is not None else "—",
        cell_text(g.noise_floor, 3) if g.noise_floor is not None else "not measured",
        num(g.minimum_detectable, 3),
        verdict,
    ]


def is_lower_bound(g: GateLine) -> bool:
    from quantgate.configuration.constants import Direction, metric

    return metric(g.metric).direction is Direction.MIN


SUBTASK_HEAD = [
    "compression",
    "group",
    "subtask",
    "items",
    "baseline",
    "compressed",
    "D %",
    "flips %",
]


SUBTASK_NOTE = (
    "A group's D is gated on its aggregate (as lm-eval aggregates it); its subtasks are "
    "reported, not gated: each is a part of the sample, with a wider interval."
)


def subtask_rows(summaries: list[PairSummary]) -> list[list[str]]:
    """One row per (variant, group benchmark, subtask): the retention rows' subtask
    breakdown (quantgate.evaluation.comparison.Comparison.subtasks)."""
    out = []
    for s in summaries:
        for metric, row in sorted(s.rows.items()):
            if not metric.startswith(RETENTION_PREFIX):  # flips_ rows carry the same extra
                continue
            for sub, r in (row.get("subtasks") or {}).items():
                out.append(
                    [
                        s.compression,
                        metric.removeprefix("D_"),
                        sub,
                        str(r.get("n_items")),
                        num(r.get("baseline"), 3),
                        num(r.get("compressed"), 3),
                        num(r.get("D"), 3),
                        num(r.get("flips_pct"), 3),
                    ]
                )
    return out
