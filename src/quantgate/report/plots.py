"""The report's plots, as PNG bytes (matplotlib, Agg backend: no display needed).

One figure per function, one model per figure: the study compares variants of a model, and
scales (PPL, tokens/s) differ between models.
"""

from __future__ import annotations

import io

from quantgate.configuration.constants import CHOICE_KLD_PREFIX, OVERALL
from quantgate.report.tables import PairSummary, benchmark_names

_PASS, _FAIL, _BASE, _CANARY = "#2b7bba", "#d62728", "#555555", "#f0a030"


def _figure(width: float = 5.6, height: float = 3.6):  # -> (Figure, Axes)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.subplots()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _color(s: PairSummary) -> str:
    if s.is_baseline or s.noise_floor:
        return _BASE
    if s.failed_cells:
        return _CANARY if s.canary else _FAIL
    return _PASS


def _mib(s: PairSummary) -> float | None:
    return None if s.size_bytes is None else s.size_bytes / 2**20


def _label_points(ax, points: list[tuple[float, float, str]]) -> None:
    for x, y, text in points:
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (smaller x, larger y), sorted by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _scatter_vs_size(pts: list[tuple[float, float, PairSummary]], ylabel: str):  # -> (Fig, Ax)
    """One labelled point per pair, coloured by its verdict, against file size."""
    fig, ax = _figure()
    for x, y, s in pts:
        ax.scatter([x], [y], color=_color(s), zorder=3)
    _label_points(ax, [(x, y, s.compression) for x, y, s in pts])
    ax.margins(0.18)
    ax.set_xlabel("file size (MiB)")
    ax.set_ylabel(ylabel)
    return fig, ax


def retention_vs_size(model: str, summaries: list[PairSummary]) -> bytes | None:
    """Score retained (100 - D_overall, %) against file size, with the Pareto front."""
    pts = []
    for s in summaries:
        mib = _mib(s)
        if mib is None:
            continue
        if s.is_baseline:
            pts.append((mib, 100.0, s))
        elif OVERALL in s.d:
            pts.append((mib, 100.0 - s.d[OVERALL].value, s))
    if len(pts) < 2:
        return None
    fig, ax = _scatter_vs_size(pts, "score retained, 100 - D_overall (%), 95% CI")
    # the interval, so a near-chance sample's 106 % reads as what it is: no evidence either way
    for x, _, s in pts:
        c = s.d.get(OVERALL)
        if c is not None and c.low is not None and c.high is not None and not s.is_baseline:
            ax.errorbar(
                [x], [100.0 - c.value], yerr=[[c.high - c.value], [c.value - c.low]],
                fmt="none", ecolor=_color(s), capsize=3, lw=1,
            )  # fmt: skip
    front = pareto_front([(x, y) for x, y, _ in pts])
    ax.plot(*zip(*front, strict=True), "--", color="#999999", label="Pareto front", zorder=2)
    ax.set_title(f"{model}: retention vs size")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def tps_vs_size(model: str, summaries: list[PairSummary]) -> bytes | None:
    pts = [(_mib(s), s.tg_tps, s) for s in summaries if _mib(s) and s.tg_tps]
    if len(pts) < 2:
        return None
    fig, ax = _scatter_vs_size(pts, "generation tokens/s")  # type: ignore[arg-type]
    ax.set_title(f"{model}: generation speed vs size")
    return _png(fig)


def kld_vs_bpw(model: str, summaries: list[PairSummary]) -> bytes | None:
    pts = [
        (s.bits_per_weight, s.cells["kld_mean"], s)
        for s in summaries
        if s.bits_per_weight and "kld_mean" in s.cells
    ]
    if not pts:
        return None
    fig, ax = _figure()
    for x, cell, s in pts:
        yerr = None
        if cell.low is not None and cell.high is not None:
            yerr = [[cell.value - cell.low], [cell.high - cell.value]]
        ax.errorbar([x], [cell.value], yerr=yerr, fmt="o", color=_color(s), capsize=3)
    _label_points(ax, [(x, c.value, s.compression) for x, c, s in pts])
    ax.set_yscale("log")
    ax.margins(0.18)
    ax.set_xlabel("bits per weight")
    ax.set_ylabel("mean KLD vs baseline (nats, log scale)")
    ax.set_title(f"{model}: KL divergence vs bits per weight")
    return _png(fig)


def retention_bars(model: str, summaries: list[PairSummary]) -> bytes | None:
    """D_i per benchmark and compression, with 95 % CI whiskers and the thresholds."""
    variants = [s for s in summaries if s.d and not s.noise_floor]
    benches = [*benchmark_names(variants), OVERALL]
    benches = [b for b in benches if any(b in s.d for s in variants)]
    if not variants or not benches:
        return None
    fig, ax = _figure(height=3.6)
    width = 0.8 / len(variants)
    palette = ["#4c72b0", "#55a868", "#8172b2", "#64b5cd", "#937860", "#da8bc3"]
    for j, s in enumerate(variants):
        offset = (j - (len(variants) - 1) / 2) * width
        xs, ys, lo, hi, edges = [], [], [], [], []
        for i, b in enumerate(benches):
            if b not in s.d:
                continue
            c = s.d[b]
            xs.append(i + offset)
            ys.append(c.value)
            lo.append(c.value - c.low if c.low is not None else 0.0)
            hi.append(c.high - c.value if c.high is not None else 0.0)
            edges.append((_CANARY if s.canary else _FAIL) if c.failed else "none")
            if c.threshold is not None:
                ax.hlines(
                    c.threshold,
                    i + offset - width / 2,
                    i + offset + width / 2,
                    colors=_FAIL,
                    linestyles=":",
                    lw=1.5,
                )
        ax.bar(
            xs,
            ys,
            width=width * 0.9,
            color=palette[j % len(palette)],
            label=s.compression,
            edgecolor=edges,
            linewidth=2.5,
        )
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="black", capsize=3, lw=1)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(benches)), [f"D_{b}" for b in benches], fontsize=8)
    ax.set_ylabel("D_i = score lost (%), 95% CI")
    ax.set_title(
        f"{model}: retention per benchmark (dotted: thresholds; outlined: breached)", fontsize=9
    )
    ax.legend(fontsize=8)
    return _png(fig)


def answer_divergence(model: str, summaries: list[PairSummary]) -> bytes | None:
    """choice_kld per benchmark and variant (log scale, 95 % CI whiskers, thresholds dotted):
    the graded signal that sees a loss where accuracy on a small sample cannot."""
    prefix = CHOICE_KLD_PREFIX
    variants = [s for s in summaries if any(k.startswith(prefix) for k in s.cells)]
    benches = sorted(
        {k.removeprefix(prefix) for s in variants for k in s.cells if k.startswith(prefix)}
    )
    if not variants or not benches:
        return None
    fig, ax = _figure(height=3.6)
    width = 0.8 / len(variants)
    for j, s in enumerate(variants):
        offset = (j - (len(variants) - 1) / 2) * width
        for i, b in enumerate(benches):
            c = s.cells.get(prefix + b)
            if c is None:
                continue
            x, y = i + offset, max(c.value, 1e-7)
            err = None
            if c.low is not None and c.high is not None:
                err = [[y - max(c.low, 1e-7)], [max(c.high - y, 0.0)]]
            ax.errorbar([x], [y], yerr=err, fmt="o", color=_color(s), capsize=3,
                        label=s.compression if i == 0 else None)  # fmt: skip
            if c.threshold is not None:
                ax.hlines(c.threshold, x - width / 2, x + width / 2, colors=_FAIL, linestyles=":")
    ax.set_yscale("log")
    ax.set_xticks(range(len(benches)), benches, fontsize=8)
    ax.set_ylabel("choice_kld (nats, log scale), 95% CI")
    ax.set_title(f"{model}: answer-distribution KLD per benchmark (dotted: thresholds)", fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


PLOTS = {
    "retention_vs_size": retention_vs_size,
    "tps_vs_size": tps_vs_size,
    "kld_vs_bpw": kld_vs_bpw,
    "retention_bars": retention_bars,
    "answer_divergence": answer_divergence,
}
