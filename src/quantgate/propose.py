"""A mixed-precision recipe for a failing GGUF pair, proven by the gate: which tensors to keep
at a higher precision (and which may go lower) so that the pair's failing perplexity and KLD
bounds pass, in the fewest bytes found, measured against the uniform types around it.

    python -m quantgate.propose --model smollm2 --compression Q2_K

1. **Each part's loss at each type.** A part is one role of one block (its attention
   projections, its FFN up and gate, its FFN down), or the token embedding / output tensor:
   finer than quantgate.diagnose's blocks because llama.cpp's own mixes already type a block's
   roles apart (Q3_K_M and Q4_K_M raise ffn_down and attn_v, not the block). Each part is probed
   as the diagnosis probes a block (the baseline with only that part re-typed, mean KLD on the
   diagnosis's chunks, cached): at the variant's types, and at each type its role may take
   (``ROLE_TYPES``; types llama.cpp cannot write for a tensor's rows are skipped, said).
2. **The predicted frontier.** A recipe's KLD is predicted as the whole variant's, less what
   each moved part's probe removes (the probes add up: 0.98-1.03x the whole on SmolLM2's
   Q2_K, tests/e2e/test_diagnose.py). Choosing one type per part for the fewest bytes under a
   KLD is a multiple-choice knapsack; its Lagrangian relaxation (each part takes the type
   minimising bytes + lambda x KLD) traces the lower convex frontier as lambda sweeps, exactly
   and in milliseconds. Each ``--targets`` fraction of the pair's kld_mean bound picks the
   smallest frontier point under it.
3. **The gate's proof.** Each picked recipe is quantized by llama.cpp's quantizer as the
   registry's ``tensor_types`` would (and read back: every tensor at the type asked), then the
   perplexity and KLD gates' measurer scores it on the whole evaluation text and the gates judge
   it against the pair's bounds, with the variant and the uniform types (``--uniform``) beside
   it. The proposal is the smallest recipe the gates pass: a table, a plot of size against KLD,
   and the registry entry to paste.

Only what a gate measures decides: the prediction chooses the recipes, the gates judge them.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from quantgate import progress
from quantgate.artifacts.gguf_file import TensorInfo, read_tensors
from quantgate.artifacts.tensor_types import TensorTypes
from quantgate.configuration.registry import Pair
from quantgate.configuration.thresholds import Thresholds
from quantgate.diagnose import (
    Diagnoser,
    Group,
    check_types,
    open_pair,
    pair_arguments,
    select_groups,
)
from quantgate.errors import ConfigError, EvaluationError, QuantgateError
from quantgate.evaluation.loading import Loading
from quantgate.evaluation.perplexity_measurer import PerplexityMeasurer
from quantgate.verdicts import measurement
from quantgate.verdicts.gates import Outcome, judge
from quantgate.verdicts.stats import Interval

#: a block's tensors by role: what llama.cpp's own mixes type apart
ROLES: dict[str, tuple[str, ...]] = {
    "attn": ("attn_q", "attn_k", "attn_v", "attn_output"),
    "ffn_up_gate": ("ffn_gate", "ffn_up"),
    "ffn_down": ("ffn_down",),
}
#: the types a part of each role may take: the ones llama.cpp's K-quant mixes give that role,
#: one step and two above Q2_K's (the token embedding's are below the Q8_0 Q2_K keeps it at)
ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "attn": ("q5_0", "q8_0"),
    "ffn_up_gate": ("q5_0", "q8_0"),
    "ffn_down": ("q4_k", "q5_k", "q6_k", "q8_0"),
    "token_embd": ("q4_0", "q5_0"),
    "output": ("q6_k", "q8_0"),
}
_BLOCK_TENSOR = re.compile(r"^blk\.(\d+)\.([^.]+)\.")


def role_of(tensor: str) -> tuple[int | None, str]:
    """(block, role) of a tensor: ``blk.3.attn_q.weight`` -> (3, "attn"); a tensor outside
    the blocks is its own role (``token_embd.weight`` -> (None, "token_embd"))."""
    if m := _BLOCK_TENSOR.match(tensor):
        kind = m.group(2)
        role = next((r for r, kinds in ROLES.items() if kind in kinds), kind)
        return int(m.group(1)), role
    return None, tensor.removesuffix(".weight")


def tensor_bytes(info: TensorInfo, ggml_type: str) -> int:
    """The bytes a tensor of ``info``'s elements takes at ``ggml_type`` (GGML's block sizes)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType[info.type.upper()]]
    n = info.n_bytes // block_bytes * block
    block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType[ggml_type.upper()]]
    return n // block * block_bytes


@dataclass(frozen=True)
class Part:
    """One role of one block (or a tensor outside the blocks) the variant re-types."""

    name: str
    block: int | None
    role: str
    #: tensor -> the variant's type
    types: dict[str, str]


def parts_of(found: list[Group]) -> list[Part]:
    """The diagnosis's groups split by role, in model order."""
    out: list[Part] = []
    for g in found:
        by_role: dict[tuple[int | None, str], dict[str, str]] = {}
        for tensor, t in g.types.items():
            by_role.setdefault(role_of(tensor), {})[tensor] = t
        for (block, role), types in sorted(by_role.items(), key=lambda kv: kv[0][1]):
            name = role if block is None else f"blk.{block}.{role}"
            out.append(Part(name, block, role, types))
    return out


@dataclass(frozen=True)
class Option:
    """One part at one choice: its probe's KLD and its bytes."""

    part: str
    #: "variant" (the variant's own types) or the ggml type every tensor of the part takes
    choice: str
    kld: float
    n_bytes: int


@dataclass
class Point:
    """A recipe on the predicted frontier: each part's choice (the parts that move), with the
    predicted KLD and the tensor bytes of the whole file."""

    choices: dict[str, str]
    predicted_kld: float
    n_bytes: int


def frontier(options: dict[str, list[Option]], whole_kld: float, other_bytes: int) -> list[Point]:
    """The predicted size-vs-KLD frontier: for each lambda, every part takes the option with
    the fewest ``n_bytes + lambda * kld`` (the Lagrangian relaxation of the multiple-choice
    knapsack); each distinct recipe once, smallest first. ``options[part][0]`` is the
    variant's choice; a recipe's KLD is ``whole_kld`` plus the moved parts' changes, its bytes
    ``other_bytes`` (the tensors no part holds) plus the parts'."""
    variant = {p: opts[0] for p, opts in options.items()}
    seen: dict[tuple[tuple[str, str], ...], Point] = {}
    # bytes per unit of KLD from 10^2 to 10^13: every trade a tensor's types offer lies inside
    for step in range(0, 1101):
        lam = 10 ** (2 + step / 100)
        chosen = {
            p: min(opts, key=lambda o: (o.n_bytes + lam * o.kld, o.n_bytes))
            for p, opts in options.items()
        }
        moved = tuple(sorted((p, o.choice) for p, o in chosen.items() if o.choice != "variant"))
        if moved in seen:
            continue
        kld = whole_kld + sum(o.kld - variant[p].kld for p, o in chosen.items())
        n_bytes = other_bytes + sum(o.n_bytes for o in chosen.values())
        seen[moved] = Point(dict(moved), max(kld, 0.0), n_bytes)
    return sorted(seen.values(), key=lambda pt: pt.n_bytes)


def pick(points: list[Point], target: float) -> Point:
    """The smallest point of the frontier predicted at or under ``target``.

    Raises:
        EvaluationError: none is (the types searched cannot reach it).
    """
    under = [pt for pt in points if pt.predicted_kld <= target]
    if not under:
        best = min(pt.predicted_kld for pt in points)
        raise EvaluationError(
            f"no recipe of the types searched is predicted under KLD {target:.3g} (the best: "
            f"{best:.3g}); give higher types (--types ROLE=TYPE,...) or a higher --targets"
        )
    return min(under, key=lambda pt: (pt.n_bytes, pt.predicted_kld))


def recipe_types(choices: dict[str, str], parts: dict[str, Part]) -> TensorTypes:
    """llama-quantize's overrides for ``choices`` (part -> ggml type): one pattern per role and
    type over the blocks that take it; the embedding and the output by their own options."""
    by_role_type: dict[tuple[str, str], list[int]] = {}
    embedding = output = None
    for name, choice in choices.items():
        part = parts[name]
        if part.block is None:
            if part.role == "token_embd":
                embedding = choice
            elif part.role == "output":
                output = choice
            else:
                raise ConfigError(f"{name}: no llama-quantize option sets this tensor's type")
        else:
            by_role_type.setdefault((part.role, choice), []).append(part.block)
    patterns = []
    for (role, t), blocks in sorted(by_role_type.items()):
        kinds = ROLES.get(role, (role,))
        kind = kinds[0] if len(kinds) == 1 else f"({'|'.join(kinds)})"
        numbers = "|".join(str(b) for b in sorted(blocks))
        patterns.append((rf"^blk\.({numbers})\.{kind}\.", t))
    return TensorTypes(tuple(patterns), output, embedding)


def expected_types(
    variant: dict[str, TensorInfo], choices: dict[str, str], parts: dict[str, Part]
) -> dict[str, str]:
    """Every tensor's type in the recipe's file: the variant's, but the moved parts'."""
    types = {name: info.type for name, info in variant.items()}
    for name, choice in choices.items():
        types.update(dict.fromkeys(parts[name].types, choice))
    return types


@dataclass
class Candidate:
    """A recipe, the variant or a uniform type, measured by the gate on the whole text."""

    name: str
    n_bytes: int
    kld_mean: Interval
    ppl_increase_pct: Interval
    top1_agreement_pct: float
    #: a recipe's predicted KLD (None for the variant and the uniform types)
    predicted_kld: float | None = None
    #: metric -> the gate's verdict ("pass" or "FAIL") against the failing pair's bounds
    verdicts: dict[str, str] = field(default_factory=dict)
    #: metric -> the gate's line (value, interval, bound)
    lines: dict[str, str] = field(default_factory=dict)
    #: a recipe's choices (part -> type)
    choices: dict[str, str] = field(default_factory=dict)
    #: metric -> whether the measured value itself is within the bound (mode point's rule)
    within: dict[str, bool] = field(default_factory=dict)

    @property
    def passes(self) -> bool:
        return bool(self.verdicts) and all(v == "pass" for v in self.verdicts.values())

    @property
    def clear(self) -> bool:
        """The gates pass it and every value is within its bound: a pass in mode ci that
        rests on the interval's optimistic end alone is one another machine may not repeat."""
        return self.passes and all(self.within.values())

    @property
    def is_recipe(self) -> bool:
        return self.predicted_kld is not None


@dataclass
class Proposal:
    model: str
    compression: str
    quant_type: str
    kld_bound: float
    n_chunks: int
    whole_kld: float
    frontier: list[Point]
    #: part -> its options (the variant's first)
    options: dict[str, list[Option]]
    measured: list[Candidate] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def chosen(self) -> Candidate | None:
        """The smallest recipe the gates passed with every value within its bound (else the
        smallest they passed)."""
        recipes = [c for c in self.measured if c.is_recipe]
        for ok in ([c for c in recipes if c.clear], [c for c in recipes if c.passes]):
            if ok:
                return min(ok, key=lambda c: c.n_bytes)
        return None

    def yaml(self, name: str, tensor_types: TensorTypes) -> str:
        """The registry entry that builds a recipe (fixtures/models.yaml)."""
        lines = [
            f"      {name}:",
            "        method: llama_quantize",
            f"        quant_type: {self.quant_type}",
        ]
        if tensor_types.patterns:
            lines.append("        tensor_types:")
            lines += [f"          '{p}': {t}" for p, t in tensor_types.patterns]
        if tensor_types.token_embedding:
            lines.append(f"        token_embedding_type: {tensor_types.token_embedding}")
        if tensor_types.output:
            lines.append(f"        output_tensor_type: {tensor_types.output}")
        return "\n".join(lines) + "\n"


class Proposer:
    """The search and its proof for one failing GGUF pair (see the module's docstring)."""

    def __init__(
        self,
        loading: Loading,
        thresholds: Thresholds,
        pair: Pair,
        n_chunks: int,
        role_types: dict[str, tuple[str, ...]] | None = None,
        blocks: str | None = None,
    ) -> None:
        self.loading, self.pair, self.thresholds = loading, pair, thresholds
        quant_type = getattr(pair.compression, "quant_type", None)
        if pair.compression.method != "llama_quantize" or quant_type is None:
            raise ConfigError(
                f"{pair.id}: propose re-types a llama_quantize entry's tensors; this one's "
                f"method is {pair.compression.method}"
            )
        self.quant_type: str = quant_type
        self.bounds = thresholds.for_pair(pair.model_key, pair.compression_name)
        if "kld_mean" not in self.bounds:
            raise ConfigError(
                f"{pair.id}: no kld_mean bound to aim at; set one in "
                f"{thresholds.directory / pair.model_key}.yaml"
            )
        self.diagnoser = Diagnoser(loading, pair, n_chunks)
        #: one for every proof: it reads the baseline's log-probs once
        self.measurer = PerplexityMeasurer(loading, thresholds)
        self.n_chunks = n_chunks
        self.role_types = {**ROLE_TYPES, **(role_types or {})}
        self.parts = {p.name: p for p in parts_of(select_groups(self.diagnoser.found, blocks))}

    @property
    def label(self) -> str:
        return f"{self.pair.model_key}-{self.pair.compression_name}"

    def options(self) -> dict[str, list[Option]]:
        """Each part's options: the variant's types, then each type its role may take."""
        base = self.diagnoser.base_tensors
        out: dict[str, list[Option]] = {}
        for i, part in enumerate(self.parts.values(), 1):
            with progress.step(f"{self.label}: part {i}/{len(self.parts)}, {part.name}"):
                own = self._probe(part, None)
                assert own is not None  # the variant's own types are always written
                own_bytes = sum(self.diagnoser.variant_tensors[t].n_bytes for t in part.types)
                out[part.name] = [Option(part.name, "variant", own, own_bytes)]
                for t in self.role_types.get(part.role, ()):
                    if all(v == t for v in part.types.values()):
                        continue  # the variant's own
                    if (kld := self._probe(part, t)) is not None:
                        n_bytes = sum(tensor_bytes(base[n], t) for n in part.types)
                        out[part.name].append(Option(part.name, t, kld, n_bytes))
        return out

    def _probe(self, part: Part, ggml_type: str | None) -> float | None:
        types = part.types if ggml_type is None else dict.fromkeys(part.types, ggml_type)
        what = ggml_type or "variant"
        try:
            result = self.diagnoser.probe(f"{self.label}-probe-{part.name}-{what}", types)
        except EvaluationError as exc:  # llama.cpp does not write that type for these rows
            if ggml_type is None:
                raise
            progress.say(f"{self.label}: {part.name} at {ggml_type} skipped: {exc}")
            return None
        return result.kld_mean

    def propose(self, targets: tuple[float, ...], uniform: tuple[str, ...]) -> Proposal:
        """The frontier, a recipe per target (a fraction of the kld_mean bound), and the gate's
        verdicts on them, the variant and the uniform types."""
        start = time.perf_counter()
        whole = self.diagnoser.score(self.diagnoser.variant).kld_mean
        options = self.options()
        held = {t for part in self.parts.values() for t in part.types}
        other = sum(i.n_bytes for n, i in self.diagnoser.variant_tensors.items() if n not in held)
        points = frontier(options, whole, other)
        bound = self.bounds["kld_mean"].value
        p = Proposal(
            self.pair.model_key,
            self.pair.compression_name,
            self.quant_type,
            bound,
            self.n_chunks,
            whole,
            points,
            options,
        )
        picked: dict[tuple[tuple[str, str], ...], tuple[float, Point]] = {}
        for share in sorted(targets):
            pt = pick(points, share * bound)
            picked.setdefault(tuple(sorted(pt.choices.items())), (share, pt))
        for share, pt in picked.values():
            types = recipe_types(pt.choices, self.parts)
            name = f"{self.pair.compression_name}-recipe-{share:g}"
            expected = expected_types(self.diagnoser.variant_tensors, pt.choices, self.parts)
            p.measured.append(self.prove(name, types, expected, pt.predicted_kld, pt.choices))
        p.measured.append(self.prove(self.pair.compression_name, TensorTypes(), None))
        for quant_type in dict.fromkeys(uniform):
            p.measured.append(self.prove(quant_type, TensorTypes(), None))
        p.seconds = time.perf_counter() - start
        return p

    def prove(
        self,
        name: str,
        overrides: TensorTypes,
        expected: dict[str, str] | None,
        predicted: float | None = None,
        choices: dict[str, str] | None = None,
    ) -> Candidate:
        """The perplexity and KLD gates on the whole evaluation text, judged against the
        pair's bounds, for the pair's entry with ``overrides`` put first (a recipe: read back,
        every tensor at its ``expected`` type), or the entry at the uniform type ``name``.
        Each is built by the entry's own method, as the registry builds it (with its
        importance matrix, where it has one)."""
        comp = self.pair.compression
        if name == self.pair.compression_name:
            artifact = self.loading.artifacts.variant(self.pair)
        else:
            update: dict[str, object] = {"quant_type": name}
            if overrides:
                own = getattr(comp, "tensor_types", {})
                update = {
                    "tensor_types": {**dict(overrides.patterns), **own},
                    "token_embedding_type": overrides.token_embedding
                    or getattr(comp, "token_embedding_type", None),
                    "output_tensor_type": overrides.output
                    or getattr(comp, "output_tensor_type", None),
                }
            entry = replace(
                self.pair, compression_name=name, compression=comp.model_copy(update=update)
            )
            artifact = self.loading.artifacts.variant(entry)
        label = artifact.label
        if expected is not None:
            written = check_types(label, artifact.path, expected)
        else:
            written = read_tensors(artifact.path)
        with progress.step(f"{label}: the perplexity and KLD gates on the whole text"):
            result = self.measurer.compare(self.pair.model_key, artifact)
        outcomes: list[Outcome] = []
        for gate, m in (
            ("perplexity", measurement.perplexity(result)),
            ("kld", measurement.kld(result)),
        ):
            bounds = {k: v for k, v in self.bounds.items() if k in m.values}
            outcomes += judge(gate, m.values, bounds, m.baselines, m.intervals, m.decisions)
        judged = [o for o in outcomes if o.threshold is not None]
        if not judged:
            raise EvaluationError(f"{label}: no perplexity or KLD bound was judged")
        return Candidate(
            name,
            sum(t.n_bytes for t in written.values()),
            result.intervals["kld_mean"],
            result.intervals["ppl_increase_pct"],
            result.top1_agreement_pct,
            predicted,
            {o.metric: o.verdict for o in judged},
            {o.metric: o.line() for o in judged},
            dict(choices or {}),
            {o.metric: _within(o) for o in judged},
        )

    def tensor_types(self, c: Candidate) -> TensorTypes:
        return recipe_types(c.choices, self.parts)


def _within(o: Outcome) -> bool:
    assert o.threshold is not None
    return replace(o, threshold=replace(o.threshold, mode="point"), decision=None).passed


def _interval(i: Interval, digits: int) -> str:
    return f"{i.value:.{digits}f} [{i.low:.{digits}f}, {i.high:.{digits}f}]"


def table(p: Proposal) -> str:
    """The recipes, the variant and the uniform types, as the gates measured them (markdown)."""
    lines = [
        f"## Recipes for {p.model}-{p.compression}, proven by the gate",
        "",
        f"Predicted from {sum(len(o) for o in p.options.values())} probes of "
        f"{len(p.options)} parts (mean KLD on the diagnosis's chunks; the whole variant "
        f"{p.whole_kld:.4f} there); measured by the perplexity and KLD gates on the whole "
        f"evaluation text [95 % CI] and judged against {p.compression}'s bounds "
        f"(kld_mean {p.kld_bound:g}); {p.seconds:.0f} s.",
        "",
        "| variant | MB | predicted KLD | KLD mean [95 % CI] | PPL increase % [95 % CI] | "
        "top-1 same % | the gates on the pair's bounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in sorted(p.measured, key=lambda c: c.n_bytes):
        failed = [m for m, v in c.verdicts.items() if v != "pass"]
        outside = [m for m, ok in c.within.items() if not ok]
        if failed:
            verdict = "FAIL: " + ", ".join(failed)
        elif outside:
            verdict = "pass on the interval only: " + ", ".join(outside)
        else:
            verdict = "pass"
        predicted = f"{c.predicted_kld:.4f}" if c.predicted_kld is not None else ""
        lines.append(
            f"| {c.name} | {c.n_bytes / 1e6:.1f} | {predicted} | {_interval(c.kld_mean, 4)} | "
            f"{_interval(c.ppl_increase_pct, 1)} | {c.top1_agreement_pct:.1f} | {verdict} |"
        )
    if (chosen := p.chosen) is not None:
        uniform = [c for c in p.measured if not c.is_recipe and c.name != p.compression]
        smallest = min((c for c in uniform if c.passes), key=lambda c: c.n_bytes, default=None)
        nearest = min(uniform, key=lambda c: abs(c.n_bytes - chosen.n_bytes), default=None)
        said = [f"Proposed: {chosen.name}, {chosen.n_bytes / 1e6:.1f} MB"]
        if smallest is not None:
            said.append(
                f"{chosen.n_bytes / smallest.n_bytes:.2f}x the smallest uniform type the gates "
                f"pass ({smallest.name}, {smallest.n_bytes / 1e6:.1f} MB)"
            )
        if nearest is not None:
            said.append(
                f"the uniform type nearest its size, {nearest.name} "
                f"({nearest.n_bytes / 1e6:.1f} MB), {'passes' if nearest.passes else 'fails'}"
            )
        lines += ["", "; ".join(said) + ".", "", f"It moves: {moved_summary(chosen.choices)}."]
    else:
        lines += [
            "",
            "No recipe tried passes the gates: search higher types (--types ROLE=TYPE,...) or "
            "lower --targets.",
        ]
    return "\n".join(lines) + "\n"


def moved_summary(choices: dict[str, str]) -> str:
    """``choices`` by role and type: ``ffn_down: 30x q4_k; token_embd: q5_0``."""
    by_role: dict[str, dict[str, int]] = {}
    for part, t in choices.items():
        role = part.split(".")[-1] if part.startswith("blk.") else part
        by_role.setdefault(role, {}).setdefault(t, 0)
        by_role[role][t] += 1
    return "; ".join(
        f"{role}: " + ", ".join(f"{n}x {t}" if n > 1 else t for t, n in sorted(types.items()))
        for role, types in sorted(by_role.items())
    )


def plot_png(p: Proposal) -> bytes:
    """Size against KLD: the predicted frontier, and what the gates measured (the whole text).
    The frontier is drawn over the sizes measured: beyond them the additive prediction runs
    to zero, which no file reaches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mb = [c.n_bytes / 1e6 for c in p.measured]
    klds = [c.kld_mean.value for c in p.measured]
    x_max = max(mb) * 1.03 if mb else max(pt.n_bytes for pt in p.frontier) / 1e6
    shown = [pt for pt in p.frontier if pt.n_bytes / 1e6 <= x_max]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.plot(
        [pt.n_bytes / 1e6 for pt in shown],
        [pt.predicted_kld for pt in shown],
        "-",
        color="0.65",
        label=f"predicted frontier (probes on {p.n_chunks} chunks)",
    )
    chosen = p.chosen
    labels: dict[tuple[int, float], list[str]] = {}
    for c in p.measured:
        labels.setdefault((c.n_bytes, c.kld_mean.value), []).append(
            c.name.removeprefix(f"{p.compression}-") if c.is_recipe else c.name
        )
        color = "tab:green" if c.clear else "tab:olive" if c.passes else "tab:red"
        ax.errorbar(
            c.n_bytes / 1e6,
            c.kld_mean.value,
            yerr=[[c.kld_mean.value - c.kld_mean.low], [c.kld_mean.high - c.kld_mean.value]],
            fmt="*" if c.is_recipe else "o",
            ms=(15 if c is chosen else 10) if c.is_recipe else 6,
            mec="black" if c is chosen else color,
            color=color,
        )
    for (n_bytes, kld), names in labels.items():
        recipe = names[0].startswith("recipe")
        ax.annotate(" = ".join(names), (n_bytes / 1e6, kld), textcoords="offset points",
                    xytext=(4, -11) if recipe else (5, 4), fontsize=7)  # fmt: skip
    ax.axhline(p.kld_bound, ls=":", color="0.3", label=f"kld_mean bound {p.kld_bound:g}")
    ax.set_yscale("log")
    if klds:
        ax.set_ylim(min(klds) / 3, max(klds) * 2)
    ax.set_xlabel("tensor bytes (MB)")
    ax.set_ylabel("mean KLD vs baseline (whole text)")
    ax.set_title(
        f"{p.model}-{p.compression}: recipes (stars; proposed: outlined) and uniform types; "
        "green: the gates pass",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write(p: Proposal, out: Path, entry: str | None) -> dict[str, Path]:
    """``out``/<pair>-recipe.md (the table and the entry), .json and .png."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{p.model}-{p.compression}-recipe"
    paths = {"table": stem.with_suffix(".md"), "json": stem.with_suffix(".json")}
    text = table(p)
    if entry:
        text += "\n```yaml\n" + entry + "```\n"
    paths["table"].write_text(text)
    doc = asdict(p) | {"chosen": p.chosen.name if p.chosen else None, "entry": entry}
    paths["json"].write_text(json.dumps(doc, indent=1))
    paths["plot"] = stem.with_suffix(".png")
    paths["plot"].write_bytes(plot_png(p))
    return paths


def _role_types(specs: list[str]) -> dict[str, tuple[str, ...]]:
    """``ROLE=TYPE,TYPE`` options, checked against the roles and ggml's types."""
    from quantgate.artifacts.tensor_types import ggml_type_id

    out: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        role, _, types = spec.partition("=")
        if role not in ROLE_TYPES or not types:
            raise ConfigError(
                f"--types {spec!r}: give ROLE=TYPE[,TYPE], ROLE one of {', '.join(ROLE_TYPES)}"
            )
        names = tuple(t.strip().lower() for t in types.split(",") if t.strip())
        for t in names:
            try:
                ggml_type_id(t)
            except ValueError as exc:
                raise ConfigError(f"--types {spec!r}: {exc}") from None
        out[role] = names
    return out


def _uniform(text: str) -> tuple[str, ...]:
    """``--uniform``'s llama.cpp quant types, checked."""
    from quantgate.configuration.source_schema import check_quant_type

    names = tuple(u.strip() for u in text.split(",") if u.strip())
    for name in names:
        try:
            check_quant_type(name)
        except ValueError as exc:
            raise ConfigError(f"--uniform: {exc}") from None
    return names


def _fractions(text: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(",") if v.strip())
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise ConfigError(f"--targets {text!r}: give fractions of the kld_mean bound, e.g. 0.5,0.7")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quantgate.propose", description=__doc__.split("\n\n")[0]
    )
    pair_arguments(parser, "reports/diagnosis")
    parser.add_argument("--chunks", type=int, default=2, help="chunks per probe (default 2)")
    parser.add_argument(
        "--types",
        action="append",
        default=[],
        metavar="ROLE=TYPE,...",
        help="the types a role may take (roles: "
        + "; ".join(f"{r}={','.join(t)}" for r, t in ROLE_TYPES.items())
        + ")",
    )
    parser.add_argument(
        "--blocks", help="search only these groups (as quantgate.diagnose --blocks; default all)"
    )
    parser.add_argument(
        "--targets",
        default="0.4,0.5,0.6,0.7,0.8",
        help="recipes predicted at these fractions of the kld_mean bound (default %(default)s)",
    )
    parser.add_argument(
        "--uniform", default="Q3_K_S,Q3_K_M,Q3_K_L,Q4_K_S,Q4_K_M", help="uniform types beside"
    )
    parser.add_argument("--name", help="the registry entry's name (default <compression>-mixed)")
    args = parser.parse_args(argv)
    if args.chunks < 1:
        parser.error("--chunks must be at least 1")
    try:
        role_types = _role_types(args.types)
        targets, uniform = _fractions(args.targets), _uniform(args.uniform)
        config, loading, pair = open_pair(args)
        try:
            proposer = Proposer(
                loading, config.thresholds, pair, args.chunks, role_types, args.blocks
            )
            p = proposer.propose(targets, uniform)
        finally:
            loading.close()
    except QuantgateError as exc:
        print(f"quantgate propose: {exc}", file=sys.stderr)
        return 2
    chosen = p.chosen
    entry = (
        p.yaml(args.name or f"{args.compression}-mixed", proposer.tensor_types(chosen))
        if chosen is not None
        else None
    )
    paths = write(p, args.out, entry)
    print(table(p))
    if entry:
        print("The registry entry (fixtures/models.yaml):\n\n" + entry)
    print("wrote " + ", ".join(str(v) for v in paths.values()))
    return 0 if chosen is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
