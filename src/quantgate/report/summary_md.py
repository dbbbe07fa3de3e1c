"""reports/summary.md, for a CI step summary: one table per model, the changes since an
earlier run."""

from __future__ import annotations

from quantgate.configuration.constants import OVERALL
from quantgate.configuration.registry import QScoreWeights
from quantgate.report.cells import (
    GATE_HEAD,
    GATE_NOTE,
    SUBTASK_HEAD,
    SUBTASK_NOTE,
    cell_text,
    columns,
    eval_time,
    floor_note,
    footprint_cells,
    footprint_head,
    gate_cells,
    num,
    provenance_note,
    size,
    subtask_rows,
)
from quantgate.report.changes import Change
from quantgate.report.tables import (
    Cell,
    PairSummary,
    gate_lines,
    q_benchmarks,
)


def render_markdown(
    tables: dict[str, list[PairSummary]],
    weights: QScoreWeights,
    changes: list[Change] | None,
    made_on: list[str] | None = None,
) -> str:
    out = ["# quantgate summary", ""]
    if made_on:
        out += [*made_on, ""]
    for model, summaries in tables.items():
        benches = columns(summaries)
        out += [f"## {model}", ""]
        head = ["compression", "size MiB", "bpw", *footprint_head(summaries)]
        head += [f"{b}" for b in benches] + [f"D_{b} %" for b in benches] + ["D_overall %"]
        head += ["PPL", "ΔPPL %", "KLD", "tg tok/s", "Q", "eval s", "verdict"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in summaries:
            label = s.compression + (f" (−blocks {s.pruned_blocks})" if s.pruned_blocks else "")
            cells = [label, size(s), num(s.bits_per_weight, 3)]
            cells += footprint_cells(s, summaries)
            cells += [num(s.scores.get(b), 3) for b in benches]
            cells += [_md_flag(s.d.get(b)) for b in benches]
            cells += [_md_flag(s.d.get(OVERALL)), num(s.ppl, 5)]
            cells += [_md_flag(s.cells.get("ppl_increase_pct")), _md_flag(s.cells.get("kld_mean"))]
            cells += [num(s.tg_tps, 4), num(s.q, 4), eval_time(s), _md_verdict(s)]
            out.append("| " + " | ".join(cells) + " |")
        used = ", ".join(q_benchmarks(summaries, weights)) or "none"
        out += [
            "",
            f"Q = {weights.w_B}·Σ w_i·B_i − {weights.w_PPL}·PPL + {weights.w_TPS}·TPS "
            f"over: {used}. Brackets: 95 % CI.",
            "",
        ]
        note = floor_note(summaries)
        if note:
            out += [note, ""]
        prov = provenance_note(summaries)
        if prov:
            out += [prov, ""]
        subtasks = subtask_rows(summaries)
        if subtasks:
            out += [f"### {model}: group subtasks", "", "| " + " | ".join(SUBTASK_HEAD) + " |"]
            out.append("|" + "---|" * len(SUBTASK_HEAD))
            out += ["| " + " | ".join(r) + " |" for r in subtasks]
            out += ["", SUBTASK_NOTE, ""]
        lines = gate_lines(summaries)
        if lines:
            out += [f"### {model}: every gate", "", "| " + " | ".join(GATE_HEAD) + " |"]
            out.append("|" + "---|" * len(GATE_HEAD))
            out += ["| " + " | ".join(gate_cells(g, markdown=True)) + " |" for g in lines]
            out += ["", GATE_NOTE, ""]
    if changes is not None:
        out += ["## Changes since the previous run", ""]
        if not changes:
            out.append("No value or verdict changed.")
        else:
            out += ["| pair | metric | before | after | verdict |", "|---|---|---|---|---|"]
            for c in changes:
                verdict = f"{c.verdict_before} → {c.verdict_after}"
                out.append(
                    f"| {c.pair} | {c.metric} | {num(c.before)} | {num(c.after)} | "
                    f"{'**' + verdict + '**' if c.verdict_changed else verdict} |"
                )
        out.append("")
    return "\n".join(out)


def _md_flag(c: Cell | None) -> str:
    text = cell_text(c)
    return f"**{text} ✗**" if c is not None and c.failed else text


def _md_verdict(s: PairSummary) -> str:
    v = s.verdict
    return f"**{v}**" if v == "FAIL" else v
