"""reports/summary.html (self-contained: CSS inline, plots as data: URIs) and reports/summary.md
(for a CI step summary), rendered from the summary rows; plus ``--compare`` against an earlier
summary.json.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from quantgate.configuration.constants import OVERALL, RETENTION_PREFIX
from quantgate.configuration.registry import QScoreWeights
from quantgate.errors import ConfigError
from quantgate.night.machine import describe
from quantgate.report.plots import PLOTS
from quantgate.report.tables import (
    Cell,
    GateLine,
    PairSummary,
    benchmark_names,
    build_tables,
    gate_lines,
    q_benchmarks,
)

# -- comparing two runs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    pair: str
    metric: str
    before: float | None
    after: float | None
    verdict_before: str | None
    verdict_after: str | None

    @property
    def verdict_changed(self) -> bool:
        return self.verdict_before != self.verdict_after


def load_previous(path: Path) -> list[dict[str, Any]]:
    """The rows of an earlier summary.json.

    Raises:
        ConfigError: a missing or unreadable file, or one that is not a quantgate summary.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--compare {path}: not found; pass an earlier summary.json") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--compare {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ConfigError(f"--compare {path}: not a quantgate summary.json (no rows list)")
    return doc["rows"]


def compare_rows(
    previous: list[dict[str, Any]], current: list[dict[str, Any]], rel_tol: float = 1e-9
) -> list[Change]:
    """Every (pair, metric) whose value or verdict differs, or that one run lacks."""
    before = {(r["pair"], r["metric"]): r for r in previous}
    after = {(r["pair"], r["metric"]): r for r in current}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        b, a = before.get(key), after.get(key)
        bv, av = (b or {}).get("value"), (a or {}).get("value")
        same_value = (
            bv is not None and av is not None and abs(av - bv) <= rel_tol * max(1.0, abs(bv))
        )
        if b and a and same_value and b.get("verdict") == a.get("verdict"):
            continue
        changes.append(
            Change(key[0], key[1], bv, av, (b or {}).get("verdict"), (a or {}).get("verdict"))
        )
    return changes


# -- formatting ----------------------------------------------------------------------------------


def _num(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}g}"


def _cell_text(c: Cell | None, digits: int = 3) -> str:
    if c is None:
        return "—"
    text = f"{c.value:.{digits}g}"
    if c.low is not None and c.high is not None:
        text += f" [{c.low:.{digits}g}, {c.high:.{digits}g}]"
    return text


def _columns(summaries: list[PairSummary]) -> list[str]:
    return benchmark_names(summaries)


def _size(s: PairSummary) -> str:
    return "—" if s.size_bytes is None else f"{s.size_bytes / 2**20:.1f}"


def _shows_sparsity(summaries: list[PairSummary]) -> bool:
    """The zero-weights column is shown where a pair of the table measured it."""
    return any(s.sparsity_pct is not None for s in summaries)


def _footprint_head(summaries: list[PairSummary]) -> list[str]:
    """Study B's footprint columns."""
    head = ["compression ratio", "peak memory MiB"]
    return head + (["zero weights %"] if _shows_sparsity(summaries) else [])


def _footprint_cells(s: PairSummary, summaries: list[PairSummary]) -> list[str]:
    base = next((b for b in summaries if b.is_baseline), s)
    ratio = s.compression_ratio(base)
    memory = "—"
    if s.peak_memory_mib is not None:
        memory = f"{s.peak_memory_mib:.0f} ({s.peak_memory_kind})"
    cells = ["—" if ratio is None else f"{ratio:.2f}×", memory]
    if _shows_sparsity(summaries):
        cells.append(_num(s.sparsity_pct, 3))
    return cells


def _eval_time(s: PairSummary) -> str:
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


def _gate_cells(g: GateLine, markdown: bool) -> list[str]:
    c = g.cell
    op = "≥" if c.threshold is not None and _is_lower_bound(g) else "≤"
    verdict = c.verdict + (" (canary, expected)" if c.expect == "fail" and c.failed else "")
    if g.underpowered:
        verdict += ", underpowered"
    if markdown and c.failed and c.expect != "fail":
        verdict = f"**{verdict}**"
    return [
        g.compression,
        g.metric,
        _cell_text(c, 4),
        f"{op} {c.threshold:g} ({g.mode or 'point'})" if c.threshold is not None else "—",
        _cell_text(g.noise_floor, 3) if g.noise_floor is not None else "not measured",
        _num(g.minimum_detectable, 3),
        verdict,
    ]


def _is_lower_bound(g: GateLine) -> bool:
    from quantgate.configuration.constants import Direction, metric

    return metric(g.metric).direction is Direction.MIN


# -- markdown ------------------------------------------------------------------------------------


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
        benches = _columns(summaries)
        out += [f"## {model}", ""]
        head = ["compression", "size MiB", "bpw", *_footprint_head(summaries)]
        head += [f"{b}" for b in benches] + [f"D_{b} %" for b in benches] + ["D_overall %"]
        head += ["PPL", "ΔPPL %", "KLD", "tg tok/s", "Q", "eval s", "verdict"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in summaries:
            label = s.compression + (f" (−blocks {s.pruned_blocks})" if s.pruned_blocks else "")
            cells = [label, _size(s), _num(s.bits_per_weight, 3)]
            cells += _footprint_cells(s, summaries)
            cells += [_num(s.scores.get(b), 3) for b in benches]
            cells += [_md_flag(s.d.get(b)) for b in benches]
            cells += [_md_flag(s.d.get(OVERALL)), _num(s.ppl, 5)]
            cells += [_md_flag(s.cells.get("ppl_increase_pct")), _md_flag(s.cells.get("kld_mean"))]
            cells += [_num(s.tg_tps, 4), _num(s.q, 4), _eval_time(s), _md_verdict(s)]
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
            out += ["| " + " | ".join(_gate_cells(g, markdown=True)) + " |" for g in lines]
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
                    f"| {c.pair} | {c.metric} | {_num(c.before)} | {_num(c.after)} | "
                    f"{'**' + verdict + '**' if c.verdict_changed else verdict} |"
                )
        out.append("")
    return "\n".join(out)


def _md_flag(c: Cell | None) -> str:
    text = _cell_text(c)
    return f"**{text} ✗**" if c is not None and c.failed else text


def _md_verdict(s: PairSummary) -> str:
    v = s.verdict
    return f"**{v}**" if v == "FAIL" else v


# -- HTML ----------------------------------------------------------------------------------------

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
        f"{html.escape(_cell_text(c))}</td>"
    )


def _bench_td(s: PairSummary, bench: str) -> str:
    """One benchmark in one cell: the score, D with its CI, and flips."""
    score, d, flips = s.scores.get(bench), s.d.get(bench), s.flips.get(bench)
    if score is None and d is None:
        return "<td>—</td>"
    lines = [f"<b>{_num(score, 3)}</b>"]
    if d is not None and not s.is_baseline:
        lines.append(f"D {html.escape(_cell_text(d))}")
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
    benches = _columns(summaries)
    head = ["compression", "size (MiB)", "bits/weight", *_footprint_head(summaries)]
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
            f"<td>{_size(s)}</td>",
            f"<td>{_num(s.bits_per_weight, 3)}</td>",
        ]
        tds += [f"<td>{html.escape(c)}</td>" for c in _footprint_cells(s, summaries)]
        tds += [_bench_td(s, b) for b in benches] + [_td(s.d.get(OVERALL), s.canary)]
        tds += [f"<td>{_num(s.ppl, 5)}</td>"]
        for key in ("ppl_increase_pct", "kld_mean", "top1_agreement_pct"):
            tds.append(_td(s.cells.get(key), s.canary))
        tds += [f"<td>{_num(s.tg_tps, 4)}</td>"]
        tds += [_td(s.cells.get(k), s.canary) for k in ("tg_tps_ratio", "pp_tps_ratio")]
        tds += [f"<td>{_num(s.q, 4)}</td>", f"<td>{_eval_time(s)}</td>"]
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
    breakdown (quantgate.evaluation.retention.Comparison.subtasks)."""
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
                        _num(r.get("baseline"), 3),
                        _num(r.get("compressed"), 3),
                        _num(r.get("D"), 3),
                        _num(r.get("flips_pct"), 3),
                    ]
                )
    return out


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
        cells = _gate_cells(g, markdown=False)
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
                    f"<td>{_num(c.before)}</td><td>{_num(c.after)}</td>"
                    f"<td{cls}>{html.escape(f'{c.verdict_before} → {c.verdict_after}')}</td></tr>"
                )
            parts.append("<table id='changes'>" + "".join(rows) + "</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(
    folder: Path,
    rows: list[dict[str, Any]],
    weights: QScoreWeights,
    created: str,
    previous: list[dict[str, Any]] | None = None,
    wall_seconds: dict[str, float] | None = None,
    machines: dict[str, dict[str, Any]] | None = None,
    sections: Sequence[Section] = (),
) -> None:
    """summary.html and summary.md next to summary.json (``wall_seconds``: its evaluation
    time per pair; ``machines``: where its verdicts were made, by run or shard; ``sections``:
    more of a model's, after its tables, such as --diagnose's)."""
    tables = build_tables(rows, weights, wall_seconds)
    changes = compare_rows(previous, rows) if previous is not None else None
    made_on = machine_lines(machines or {})
    markdown = render_markdown(tables, weights, changes, made_on)
    markdown += "".join(f"\n{s.markdown()}" for s in sections)
    (folder / "summary.md").write_text(markdown, "utf-8")
    (folder / "summary.html").write_text(
        render_html(tables, weights, changes, created, made_on, sections), "utf-8"
    )


def machine_lines(machines: dict[str, dict[str, Any]]) -> list[str]:
    """ "Made on ..." per run (one) or per shard (a merged night), for the top of the page."""
    return [
        f"Made on{' (' + run + ')' if run else ''}: {describe(record)}"
        + (
            f"; llama.cpp: {record['llama_cpp_system_info']}"
            if record.get("llama_cpp_system_info")
            else ""
        )
        for run, record in machines.items()
    ]


def main(argv: list[str] | None = None) -> int:
    """Render summary.md/html from a summary.json: the reports of a run that was killed before
    its end (every finished test's rows are in summary.json already)."""
    import argparse

    from quantgate.configuration.registry import load_registry

    parser = argparse.ArgumentParser(prog="python -m quantgate.report")
    parser.add_argument("folder", type=Path, help="the reports folder holding summary.json")
    parser.add_argument("--registry", type=Path, default=Path("fixtures/models.yaml"))
    parser.add_argument("--compare", type=Path, help="an earlier summary.json")
    args = parser.parse_args(argv)
    summary = args.folder / "summary.json"
    try:
        doc = json.loads(summary.read_text())
        weights = load_registry(args.registry.resolve()).data.report.q_score
        previous = load_previous(args.compare) if args.compare else None
    except (OSError, ValueError, ConfigError) as exc:
        print(f"{summary}: cannot render reports: {exc}")
        return 2
    write_reports(
        args.folder,
        doc["rows"],
        weights,
        doc["created"],
        previous,
        doc.get("wall_seconds"),
        doc.get("machines"),
    )
    print(f"{args.folder}: summary.md and summary.html from {len(doc['rows'])} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
