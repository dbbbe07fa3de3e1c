"""reports/summary.html, self-contained (CSS inline, plots as data: URIs): one table per
model, its subtasks and gates, its plots, the sections of other modules, the changes."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from typing import Protocol

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
from quantgate.report.plots import PLOTS
from quantgate.report.tables import (
    Cell,
    PairSummary,
    gate_lines,
    q_benchmarks,
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px} h2{font-size:18px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 7px;text-align:right;white-space:nowrap;
vertical-align:top} th{white-space:normal;max-width:130px} .scroll{overflow-x:auto}
th{background:#f2f2f2} td:first-child,th:first-child{text-align:left}
td.fail{background:#f8d0d0;color:#8b0000;font-weight:600}
td.expected{background:#fde8c8}
td.pass{background:#e3f2e3} tr.baseline td{background:#f7f7f7;font-style:italic}
.note{color:#555;font-size:12px;max-width:1100px}
.plots{display:flex;flex-wrap:wrap;gap:12px} .plots img{border:1px solid #ddd;max-width:560px}
"""


def _cls(cells: list[Cell], canary: bool) -> str:
    if any(c.failed for c in cells):
        return "expected" if canary else "fail"
    return "pass" if any(c.verdict == "pass" for c in cells) else ""


def _td(c: Cell | None, canary: bool = False) -> str:
    if c is None:
        return "<td>—</td>"
    title = f"threshold {c.threshold:g} ({c.verdict})" if c.threshold is not None else c.verdict
    return (
        f'<td class="{_cls([c], canary)}" title="{html.escape(title)}">'
        f"{html.escape(cell_text(c))}</td>"
    )


def _bench_td(s: PairSummary, bench: str) -> str:
    """One benchmark in one cell: the score, D with its CI, and flips."""
    score, d, flips = s.scores.get(bench), s.d.get(bench), s.flips.get(bench)
    if score is None and d is None:
        return "<td>—</td>"
    lines = [f"<b>{num(score, 3)}</b>"]
    if d is not None and not s.is_baseline:
        lines.append(f"D {html.escape(cell_text(d))}")
    if flips is not None:
        lines.append(f"flips {flips.value:.3g} %")
    cells = [c for c in (d, flips) if c is not None]
    title = "; ".join(
        f"{name} threshold {c.threshold:g} ({c.verdict})"
        for name, c in (("D", d), ("flips", flips))
        if c is not None and c.threshold is not None
    )
    return (
        f'<td class="{_cls(cells, s.canary)}" title="{html.escape(title)}">'
        + "<br>".join(lines)
        + "</td>"
    )


def _model_table(summaries: list[PairSummary], weights: QScoreWeights) -> str:
    benches = columns(summaries)
    head = ["compression", "size (MiB)", "bits/weight", *footprint_head(summaries)]
    head += [f"{b}: score, D (%), flips" for b in benches] + ["D_overall (%)"]
    head += ["PPL", "ΔPPL (%)", "mean KLD", "top-1 (%)", "tg tok/s", "tg ratio", "pp ratio"]
    head += ["Q", "eval time (s)", "verdict"]
    rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for s in summaries:
        name = html.escape(s.compression)
        if s.pruned_blocks:
            name += f"<br><small>{s.n_blocks} blocks; removed {s.pruned_blocks}</small>"
        tds = [
            f"<td>{name}</td>",
            f"<td>{size(s)}</td>",
            f"<td>{num(s.bits_per_weight, 3)}</td>",
        ]
        tds += [f"<td>{html.escape(c)}</td>" for c in footprint_cells(s, summaries)]
        tds += [_bench_td(s, b) for b in benches] + [_td(s.d.get(OVERALL), s.canary)]
        tds += [f"<td>{num(s.ppl, 5)}</td>"]
        for key in ("ppl_increase_pct", "kld_mean", "top1_agreement_pct"):
            tds.append(_td(s.cells.get(key), s.canary))
        tds += [f"<td>{num(s.tg_tps, 4)}</td>"]
        tds += [_td(s.cells.get(k), s.canary) for k in ("tg_tps_ratio", "pp_tps_ratio")]
        tds += [f"<td>{num(s.q, 4)}</td>", f"<td>{eval_time(s)}</td>"]
        verdict_cls = {"FAIL": "fail", "pass": "pass"}.get(s.verdict, "")
        if s.verdict.startswith("FAIL (canary"):
            verdict_cls = "expected"
        title = ", ".join(s.failed_cells) or s.verdict
        tds.append(
            f'<td class="{verdict_cls}" title="{html.escape(title)}">{html.escape(s.verdict)}</td>'
        )
        cls = ' class="baseline"' if s.is_baseline else ""
        rows.append(f"<tr{cls}>" + "".join(tds) + "</tr>")
    used = ", ".join(q_benchmarks(summaries, weights)) or "none"
    note = (
        f"Q = {weights.w_B}·Σ w_i·B_i − {weights.w_PPL}·PPL + {weights.w_TPS}·TPS, B_i in %, "
        f"TPS = generation tokens/s; summed over: {html.escape(used)} (weights "
        f"{html.escape(json.dumps(weights.benchmarks))}). Brackets are 95 % paired bootstrap "
        "intervals. Red: breached threshold; amber: a canary failing as declared; green: "
        "within its threshold. Hover a cell for its threshold."
    )
    floor = floor_note(summaries)
    if floor:
        note += "<br>" + html.escape(floor)
    prov = provenance_note(summaries)
    if prov:
        note += "<br>" + html.escape(prov)
    table = f'<div class="scroll"><table>{"".join(rows)}</table></div><p class="note">{note}</p>'
    return table + _gate_table(summaries)


def _subtask_table(summaries: list[PairSummary]) -> str:
    rows = subtask_rows(summaries)
    if not rows:
        return ""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in SUBTASK_HEAD) + "</tr>"
    body = ["<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows]
    return (
        f'<div class="scroll"><table class="subtasks">{head}{"".join(body)}</table></div>'
        f'<p class="note">{html.escape(SUBTASK_NOTE)}</p>'
    )


def _gate_table(summaries: list[PairSummary]) -> str:
    lines = gate_lines(summaries)
    if not lines:
        return ""
    rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in GATE_HEAD) + "</tr>"]
    for g in lines:
        cells = gate_cells(g, markdown=False)
        cls = _cls([g.cell], g.cell.expect == "fail")
        tds = [f"<td>{html.escape(x)}</td>" for x in cells[:-1]]
        tds.append(f'<td class="{cls}">{html.escape(cells[-1])}</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return (
        f'<details class="gates"><summary>every gate: noise floor and minimum detectable loss'
        f'</summary><div class="scroll"><table>{"".join(rows)}</table></div>'
        f'<p class="note">{html.escape(GATE_NOTE)}</p></details>'
    )


class Section(Protocol):
    """A page section of one model's, rendered by its own module (quantgate.diagnose)."""

    model: str

    def html(self) -> str: ...

    def markdown(self) -> str: ...


def render_html(
    tables: dict[str, list[PairSummary]],
    weights: QScoreWeights,
    changes: list[Change] | None,
    created: str,
    made_on: list[str] | None = None,
    sections: Sequence[Section] = (),
) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>quantgate summary</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>quantgate summary</h1><p class='note'>created {html.escape(created)}</p>",
        *(f"<p class='note machine'>{html.escape(line)}</p>" for line in made_on or []),
    ]
    for model, summaries in tables.items():
        parts.append(f"<h2 id='{html.escape(model)}'>{html.escape(model)}</h2>")
        parts.append(_model_table(summaries, weights))
        parts.append(_subtask_table(summaries))
        imgs = []
        for name, plot in PLOTS.items():
            png = plot(model, summaries)
            if png:
                data = base64.b64encode(png).decode()
                imgs.append(
                    f"<img alt='{model} {name}' data-plot='{name}' "
                    f"src='data:image/png;base64,{data}'>"
                )
        if imgs:
            parts.append("<div class='plots'>" + "".join(imgs) + "</div>")
        parts += [s.html() for s in sections if s.model == model]
    if changes is not None:
        parts.append("<h2>Changes since the previous run</h2>")
        if not changes:
            parts.append("<p>No value or verdict changed.</p>")
        else:
            rows = [
                "<tr><th>pair</th><th>metric</th><th>before</th><th>after</th><th>verdict</th></tr>"
            ]
            for c in changes:
                cls = " class='fail'" if c.verdict_changed else ""
                rows.append(
                    f"<tr><td>{html.escape(c.pair)}</td><td>{html.escape(c.metric)}</td>"
                    f"<td>{num(c.before)}</td><td>{num(c.after)}</td>"
                    f"<td{cls}>{html.escape(f'{c.verdict_before} → {c.verdict_after}')}</td></tr>"
                )
            parts.append("<table id='changes'>" + "".join(rows) + "</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
