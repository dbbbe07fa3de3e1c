"""What an evaluator measured for one pair's gate, as one object that ``quantgate.verdicts.judge``
judges and ``quantgate.verdicts.recorder`` records: the values, their intervals and baselines, a
sequential gate's early decisions, more fields for the summary rows, informational JUnit
properties, and which metrics the test is responsible for.

The functions below build one from each evaluator's result (quality: perplexity and KLD;
retention: one benchmark's comparison, and D_overall; throughput; footprint). They are pure:
no backend, no file, no pytest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quantgate.configuration.constants import (
    ANSWERS_CHANGED_PREFIX,
    FLIPS_PREFIX,
    OVERALL,
    PER_BENCHMARK,
    RETENTION_PREFIX,
    gate_metrics,
)
from quantgate.verdicts.stats import Interval, overall_interval, proportion_interval

if TYPE_CHECKING:  # the evaluators' result types: no lm-eval or backend import at run time
    from quantgate.evaluation.comparison import Comparison
    from quantgate.evaluation.quality import QualityResult
    from quantgate.verdicts.sequential import SequentialVerdict


@dataclass
class Measurement:
    """One gate's measurement of one pair."""

    gate: str
    values: dict[str, float]
    intervals: dict[str, Interval] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    #: mode sequential: "pass"/"fail" where the confidence sequence decided, by metric
    decisions: dict[str, str] = field(default_factory=dict)
    #: more fields for a metric's summary row (item counts, flips, the footprint's facts)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: JUnit properties recorded before the verdicts (scores, counts: not judged)
    properties: list[tuple[str, object]] = field(default_factory=list)
    #: every metric this test measures when it can: a bound on one not measured is an error...
    responsible: tuple[str, ...] = ()
    #: ...unless named here with the reason (hardware this machine lacks, a pinned baseline)
    not_measured_here: dict[str, str] = field(default_factory=dict)
    #: why a metric cannot be measured for this pair whatever the machine (a baseline that
    #: scored 0): measured and reported where it has no bound, an error where it has one
    undefined: dict[str, str] = field(default_factory=dict)
    #: where the pair's models came from, for every summary row (baseline_provenance,
    #: source_type_match, what the compression method adds): set by the measurer that loaded
    #: them (quantgate.evaluation.loading.Loading.provenance)
    provenance: dict[str, Any] = field(default_factory=dict)


def perplexity(result: QualityResult) -> Measurement:
    """PPL increase and ln PPL ratio over the text's chunks (llama-perplexity's protocol)."""
    m = Measurement(
        "perplexity",
        _catalogued(result.metrics, "perplexity"),
        intervals=result.intervals,
        extra={"ppl_increase_pct": {"ppl": result.ppl, "ppl_baseline": result.ppl_baseline}},
        responsible=gate_metrics("perplexity"),
    )
    _sequential_chunks(m, result)
    return m


def kld(result: QualityResult) -> Measurement:
    """Mean and 99th-percentile KLD against the baseline's log-probs, and top-1 agreement."""
    m = Measurement(
        "kld",
        _catalogued(result.metrics, "kld"),
        intervals=result.intervals,
        responsible=gate_metrics("kld"),
    )
    _sequential_chunks(m, result)
    return m


def _catalogued(values: dict[str, float], gate: str) -> dict[str, float]:
    """The catalogue's metrics of ``gate`` among ``values`` (what its evaluator computed). A
    catalogued metric the evaluator does not compute is absent: a bound on it is then the
    judge's "cannot measure" error, never a pass (docs/gates.md, "Adding a gate metric")."""
    return {k: values[k] for k in gate_metrics(gate) if k in values}


def _sequential_chunks(m: Measurement, result: QualityResult) -> None:
    """Mode sequential over chunks: each of the gate's metrics the sequence judged."""
    for name, seq in (result.sequential or {}).items():
        if name in m.values:
            _sequential(m, name, name, seq, m.values[name], "chunks")


def _sequential(
    m: Measurement, metric: str, label: str, seq: SequentialVerdict, value: float, unit: str
) -> None:
    """Where a sequential gate stopped: its decision and the sequence at the stop (when it
    decided), the summary row's ``sequential`` field and JUnit properties named ``label.*``."""
    if seq.decision in ("pass", "fail"):  # decided: judged on the sequence at the stop
        m.decisions[metric] = seq.decision
        m.intervals[metric] = Interval(value, seq.low, seq.high)
    m.extra[metric] = m.extra.get(metric, {}) | {
        "sequential": {
            "items_used": seq.n_used,
            "items_available": seq.n_available,
            "stop": seq.decision,
            "reason": seq.reason.replace("items", unit),
            "sequence95": [seq.low, seq.high],
        }
    }
    m.properties.append(
        (f"{label}.sequential", f"{seq.decision}: {seq.reason}".replace("items", unit))
    )
    m.properties.append((f"{label}.{unit}_available", seq.n_available))


def retention(c: Comparison) -> Measurement:
    """One benchmark: D_<name> with its paired interval (mode sequential: the sequence at the
    stop; undefined where the baseline scored 0), and where the items allow flips_<name> (the
    flip rate's exact interval), answers_changed_<name> (a generation task's filtered answers,
    exact interval), Dgold_<name> and choice_kld_<name> (graded per-item signals)."""
    name, result = c.benchmark, c.compressed
    d_name = f"{RETENTION_PREFIX}{name}"
    m = Measurement(
        "retention",
        {},
        baselines={d_name: c.baseline_score},
        extra={d_name: {"score": result.score, "n_items": result.n_items}},
        properties=[
            (f"{name}.{result.metric}", f"{result.score:.4f}"),
            (f"{name}.items", result.n_items),
        ],
        responsible=tuple(f"{prefix}{name}" for prefix in PER_BENCHMARK),
    )
    if c.baseline_score > 0:
        m.values[d_name] = c.d
        if (interval := c.interval()) is not None:
            m.intervals[d_name] = interval
    else:  # D against zero is undefined: the paired signals below may still be gated
        m.undefined[d_name] = zero_baseline(c)
    if subtasks := c.subtasks():  # a group: its aggregate is gated, each subtask reported
        m.extra[d_name]["subtasks"] = subtasks
        for sub, row in subtasks.items():
            m.properties.append((f"{name}.{sub}.{result.metric}", f"{row['compressed']:.4f}"))
    if (seq := c.sequential) is not None:
        _sequential(m, d_name, name, seq, c.d, "items")
    if (f := c.flips()) is not None:
        flips_name = f"{FLIPS_PREFIX}{name}"
        m.values[flips_name], m.intervals[flips_name] = f.flips_pct, f.interval
        # D's row and the flips row both carry the counts
        m.extra[flips_name] = m.extra[d_name] = m.extra[d_name] | {
            "correct_to_wrong": f.correct_to_wrong,
            "wrong_to_correct": f.wrong_to_correct,
            "mcnemar_p": f.mcnemar_p,
        }
        m.properties.append((f"{name}.mcnemar_p", f"{f.mcnemar_p:.4g}"))
    if (changed := c.answers_changed()) is not None:
        changed_name = f"{ANSWERS_CHANGED_PREFIX}{name}"
        iv = proportion_interval(*changed)
        m.values[changed_name], m.intervals[changed_name] = iv.value, iv
        m.extra[changed_name] = {"answers_changed": changed[0], "n_items": changed[1]}
    for metric_name, iv in c.graded().items():
        m.values[metric_name], m.intervals[metric_name] = iv.value, iv
    if c.baseline is None:
        # a pinned score has no items to pair with: the paired metrics are the user's explicit
        # trade, reported as not measured (D_ itself is still judged)
        m.not_measured_here = {
            f"{prefix}{name}": "--baseline pinned: no baseline items to pair with"
            for prefix in PER_BENCHMARK
            if prefix != RETENTION_PREFIX
        }
    return m


def retention_overall(comparisons: list[Comparison]) -> Measurement:
    """D_overall: the mean of the model's D_i, with an interval that resamples each
    benchmark's items."""
    name = f"{RETENTION_PREFIX}{OVERALL}"
    zero = [c for c in comparisons if not c.baseline_score > 0]
    if zero:  # a mean over the other benchmarks would not be the D_overall a bound means
        return Measurement(
            "retention", {}, responsible=(name,), undefined={name: zero_baseline(zero[0])}
        )
    paired = [c.paired_scores() for c in comparisons]
    interval = overall_interval(paired) if all(paired) else None  # type: ignore[arg-type]
    return Measurement(
        "retention",
        {name: sum(c.d for c in comparisons) / len(comparisons)},
        intervals={name: interval} if interval else {},
        responsible=(name,),
    )


def zero_baseline(c: Comparison) -> str:
    """Why D is undefined for a benchmark its baseline scored 0 on (a 135M model's GSM8K)."""
    return (
        f"the baseline scored 0 on {c.what} ({c.baseline_score}), and retention against zero "
        f"is undefined; gate {ANSWERS_CHANGED_PREFIX}{c.benchmark} instead (a generation "
        "task), or use a model that scores on it"
    )


def throughput(
    kind: str,
    tokens_per_s: float,
    baseline_tokens_per_s: float,
    by_length: dict[int, float] | None = None,
) -> Measurement:
    """pp or tg tokens/s as a ratio to the baseline's, timed in the same run."""
    ratio = f"{kind}_tps_ratio"
    return Measurement(
        "throughput",
        {ratio: tokens_per_s / baseline_tokens_per_s},
        baselines={ratio: baseline_tokens_per_s},
        # tg at several lengths (Study A's TPS is their mean): each length's own rate
        extra={ratio: {"tokens_per_s": tokens_per_s, "tokens_per_s_by_length": by_length}},
        properties=[(f"{kind}_tokens_per_s", f"{tokens_per_s:.1f}")],
        responsible=(ratio,),
    )


def footprint(facts: dict[str, Any]) -> Measurement:
    """Size against the baseline's, peak RSS (and VRAM on a GPU), and where a backend reads
    its weights, their share of zeros and of 2:4 groups."""
    m = Measurement(
        "footprint",
        {
            "size_ratio": facts["file_size_bytes"] / facts["baseline_file_size_bytes"],
            "peak_rss_mib": facts["peak_rss_mib"],
        },
        baselines={"size_ratio": 1.0, "peak_rss_mib": facts["baseline_peak_rss_mib"]},
        extra={"size_ratio": facts},
        properties=[
            ("file_size_bytes", facts["file_size_bytes"]),
            ("size_measured_as", facts["size_measured_as"]),
            ("load_seconds", f"{facts['load_seconds']:.2f}"),
            ("bits_per_weight", f"{facts['bits_per_weight']:.3f}"),
            ("baseline_bits_per_weight", f"{facts['baseline_bits_per_weight']:.3f}"),
        ],
        responsible=gate_metrics("footprint"),
        # a GPU entry run where no GPU answers: reported, never a pass
        not_measured_here={"peak_vram_mib": "no GPU memory was measured in this process"},
    )
    if facts["peak_vram_mib"] is not None:  # a pair on a GPU
        m.values["peak_vram_mib"] = facts["peak_vram_mib"]
        m.baselines["peak_vram_mib"] = facts["baseline_peak_vram_mib"]
    if facts["sparsity"] is not None:  # a backend that reads its weights (transformers)
        m.values |= facts["sparsity"]
    return m
