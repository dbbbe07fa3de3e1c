"""Pure data: quant types users name in the registry, and the metrics thresholds can gate."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class LlamaQuantType:
    """A llama.cpp quantization preset, as ``llama-quantize`` names it."""

    name: str
    #: ``LLAMA_FTYPE_MOSTLY_*`` in llama.h (read from llama_cpp at quantize time).
    ftype_attr: str
    #: llama.cpp refuses these without an importance matrix (src/llama-quant.cpp,
    #: tensor_requires_imatrix), measured with a dry run of each type on SmolLM2.
    needs_imatrix: bool = False


def _qt(name: str, needs_imatrix: bool = False) -> LlamaQuantType:
    return LlamaQuantType(name, f"LLAMA_FTYPE_MOSTLY_{name}", needs_imatrix)


# Names as listed by `llama-quantize --help` (llama.cpp tools/quantize/quantize.cpp QUANT_OPTIONS).
LLAMA_QUANT_TYPES: dict[str, LlamaQuantType] = {
    qt.name: qt
    for qt in [
        # F32 is no compression: an upcast, used as a known-slower variant to prove the speed gate
        LlamaQuantType("F32", "LLAMA_FTYPE_ALL_F32"),
        _qt("F16"), _qt("BF16"), _qt("Q8_0"),
        _qt("Q6_K"),
        _qt("Q5_K_M"), _qt("Q5_K_S"), _qt("Q5_1"), _qt("Q5_0"),
        _qt("Q4_K_M"), _qt("Q4_K_S"), _qt("Q4_1"), _qt("Q4_0"),
        _qt("Q3_K_L"), _qt("Q3_K_M"), _qt("Q3_K_S"),
        _qt("Q2_K"), _qt("Q2_K_S", needs_imatrix=True),
        _qt("IQ4_NL"), _qt("IQ4_XS"),
        # IQ3_XS and IQ3_XXS files hold IQ3_XXS tensors, which llama.cpp refuses to make
        # without a matrix, except in models whose rows are not 256-wide (SmolLM2's 576: those
        # tensors fall back to other types); the registry asks for one on any model
        _qt("IQ3_M"), _qt("IQ3_S"), _qt("IQ3_XS", needs_imatrix=True),
        _qt("IQ3_XXS", needs_imatrix=True),
        _qt("IQ2_M", needs_imatrix=True), _qt("IQ2_S", needs_imatrix=True),
        _qt("IQ2_XS", needs_imatrix=True), _qt("IQ2_XXS", needs_imatrix=True),
        _qt("IQ1_M", needs_imatrix=True), _qt("IQ1_S", needs_imatrix=True),
        _qt("TQ1_0"), _qt("TQ2_0"),
    ]
}  # fmt: skip


class Direction(str, Enum):
    """Whether the threshold is an upper bound (``max``) or a lower bound (``min``)."""

    MAX = "max"
    MIN = "min"


@dataclass(frozen=True)
class Metric:
    name: str
    gate: str
    direction: Direction
    unit: str
    description: str
    #: whether the gate measures a confidence interval for it (needed by modes ci and strict)
    has_interval: bool = False
    #: whether mode sequential can judge it over the evaluation text's chunks: a mean over
    #: chunks of a per-chunk value (the NLL difference, or the chunk's mean KLD)
    sequential_over_chunks: bool = False


# Every key a thresholds/ file may set. A misspelt key is an error, never silently ignored.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("ppl_increase_pct", "perplexity", Direction.MAX, "%",
               "PPL rise over the baseline: (PPL_c / PPL_b - 1) * 100", has_interval=True,
               sequential_over_chunks=True),
        Metric("ln_ppl_ratio", "perplexity", Direction.MAX, "nats",
               "ln(PPL_c / PPL_b): the mean per-token NLL increase (the same rule as "
               "ppl_increase_pct in other units: a pair may gate one of the two)",
               has_interval=True, sequential_over_chunks=True),
        Metric("kld_mean", "kld", Direction.MAX, "nats",
               "mean KL(P_baseline || P_compressed) over the scored tokens", has_interval=True,
               sequential_over_chunks=True),
        Metric("kld_p99", "kld", Direction.MAX, "nats",
               "99th percentile of the per-token KL divergence", has_interval=True),
        Metric("top1_agreement_pct", "kld", Direction.MIN, "%",
               "share of scored tokens whose argmax equals the baseline's", has_interval=True),
        Metric("pp_tps_ratio", "throughput", Direction.MIN, "x",
               "prompt-processing tokens/s of the compressed model / the baseline's, same run"),
        Metric("tg_tps_ratio", "throughput", Direction.MIN, "x",
               "generation tokens/s of the compressed model / the baseline's, same run"),
        Metric("size_ratio", "footprint", Direction.MAX, "x",
               "file size of the compressed artifact / the baseline's"),
        Metric("peak_rss_mib", "footprint", Direction.MAX, "MiB",
               "peak resident memory of a process that loads the artifact and evaluates a prompt"),
        Metric("peak_vram_mib", "footprint", Direction.MAX, "MiB",
               "peak GPU memory of that process (GPU pairs only), e.g. at most 7600 for an "
               "8 GB card"),
        Metric("weight_sparsity_pct", "footprint", Direction.MIN, "%",
               "share of the linear layers' weights (output head aside) that are exactly zero, "
               "as loaded (transformers pairs): a pruning that did nothing fails it"),
        Metric("weight_2of4_pct", "footprint", Direction.MIN, "%",
               "share of groups of 4 consecutive input weights with at most 2 non-zeros: 100 "
               "for a 2:4 semi-structured sparse model"),
    ]
}  # fmt: skip

GATES: tuple[str, ...] = ("perplexity", "kld", "throughput", "footprint", "retention")
# The gates a canary (`expect: fail`) must fail unless its entry lists others.
QUALITY_GATES: tuple[str, ...] = ("perplexity", "kld")


def gate_metrics(gate: str) -> tuple[str, ...]:
    """The catalogue's metrics of one gate, in catalogue order (its measurer's responsibility:
    quantgate.verdicts.measurement)."""
    return tuple(m.name for m in METRICS.values() if m.gate == gate)


#: the chunk metrics gate mode sequential can judge
#: (quantgate.evaluation.quality.compare_sequential)
SEQUENTIAL_CHUNK_METRICS: tuple[str, ...] = tuple(
    m.name for m in METRICS.values() if m.sequential_over_chunks
)

#: Benchmark retention D_i = (1 - B_compressed / B_baseline) * 100 is gated per benchmark as
#: D_<benchmark name> (and D_overall, the mean), in %, as an upper bound. Higher-is-better
#: metrics only: a lower-is-better metric would need D_i = (B_c / B_b - 1) * 100 (not offered).
RETENTION_PREFIX = "D_"
OVERALL = "overall"
#: flips_<benchmark>: % of items whose correctness changed (correct/wrong metrics only)
FLIPS_PREFIX = "flips_"
#: Dgold_<benchmark>: the retention of the mean gold-choice probability (multiple choice with
#: one gold answer): a graded, paired per-item signal where accuracy on a few dozen items of a
#: near-chance model carries almost none
GOLD_PREFIX = "Dgold_"
#: choice_kld_<benchmark>: mean KL divergence between the baseline's and the compressed
#: model's answer distributions over each item's choices
CHOICE_KLD_PREFIX = "choice_kld_"
#: answers_changed_<benchmark>: % of a generation task's items whose answer (the generated text
#: after the metric's filter, e.g. GSM8K's extracted number) differs from the baseline's: the
#: paired signal of a generation benchmark that the baseline scores 0 on (a small model's GSM8K)
ANSWERS_CHANGED_PREFIX = "answers_changed_"


@dataclass(frozen=True)
class _Family:
    description: str
    unit: str = "%"
    #: what a benchmark needs for the family to be measured on it (for the error that names
    #: a bound a pair's test cannot measure)
    needs: str = "this benchmark"


#: per-benchmark metric families (all in the retention gate, all upper bounds, all with a
#: paired interval): prefix -> description of <benchmark>
PER_BENCHMARK: dict[str, _Family] = {
    RETENTION_PREFIX: _Family("score lost on {}: (1 - B_compressed / B_baseline) * 100"),
    FLIPS_PREFIX: _Family(
        "items of {} whose correctness changed (either way), in % of the items",
        needs="flips need a correct/wrong metric",
    ),
    GOLD_PREFIX: _Family(
        "gold-choice probability lost on {}: (1 - mean p_c(gold) / mean p_b(gold)) * 100, p "
        "the softmax of the choices' log-likelihoods",
        needs="Dgold needs a correct/wrong multiple-choice metric with one gold answer",
    ),
    CHOICE_KLD_PREFIX: _Family(
        "mean KL(P_baseline || P_compressed) between the answer distributions over the choices "
        "of {}'s items",
        "nats",
        needs="choice_kld needs multiple-choice items",
    ),
    ANSWERS_CHANGED_PREFIX: _Family(
        "items of {} (a generation task) whose answer after the metric's filter differs from "
        "the baseline's, in % of the items",
        needs="answers_changed needs a generation task",
    ),
}


def split_benchmark_metric(name: str) -> tuple[str, str] | None:
    """(prefix, benchmark) of a per-benchmark metric name, else None. The longest matching
    prefix wins, so a benchmark may itself be named like another family."""
    for prefix in sorted(PER_BENCHMARK, key=len, reverse=True):
        if name.startswith(prefix) and len(name) > len(prefix):
            return prefix, name.removeprefix(prefix)
    return None


def metric(name: str) -> Metric:
    """The catalog entry of a metric, including the per-benchmark families (all belong to the
    retention gate, as upper bounds, with a paired interval)."""
    if name in METRICS:
        return METRICS[name]
    split = split_benchmark_metric(name)
    if split is not None:
        family = PER_BENCHMARK[split[0]]
        return Metric(
            name, "retention", Direction.MAX, family.unit, family.description.format(split[1]), True
        )
    raise KeyError(name)
