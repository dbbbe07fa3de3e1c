"""Where a GGUF variant's loss comes from: each block's own KLD, ranked.

``python -m quantgate.diagnose --model smollm2 --compression Q2_K``

A *probe* is the baseline with one group of tensors (a transformer block's, the token
embedding, the output) at the types the variant gave them, every other tensor as the baseline
holds it. Its mean KLD against the baseline's log-probs (the perplexity gate's protocol and
cache, on the first ``chunks`` chunks of the evaluation text) is that group's own loss, with the
chunk-bootstrap interval the gates use. Isolating one group (rather than putting one group of
the variant back at the baseline's precision) measures each group against a clean model: the
loss of a group is the probe's KLD itself, not a small difference of two large, noisy ones; and
the probes' sum is checked against the whole variant's KLD (``additivity``: near 1 where the
groups' errors add, as they do at low loss).

Each probe is a GGUF file written by llama.cpp's quantizer from the baseline with one exact-name
override per re-typed tensor (quantgate.artifacts.tensor_types), so no layer-position rule of a base
type moves another tensor; it is read back and must hold exactly the types asked. Its score is
cached (keyed by the baseline's scores, the types and llama.cpp's version), the file deleted
once scored: a second diagnosis, or one interrupted and run again, reads the scores.
``pytest --diagnose`` runs this for every GGUF pair that failed a perplexity or KLD gate.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from quantgate import progress
from quantgate.artifacts.cache import cache_key, cache_root, locked, read_result, write_result
from quantgate.artifacts.gguf_file import TensorInfo, read_tensors
from quantgate.artifacts.llama_quantizer import llama_cpp_version, llama_quantize
from quantgate.artifacts.store import Artifact
from quantgate.artifacts.tensor_types import UNQUANTIZED_TYPES, TensorTypes
from quantgate.configuration.registry import Pair
from quantgate.configuration.validation import Configuration, load_configuration
from quantgate.errors import ConfigError, EvaluationError, QuantgateError
from quantgate.evaluation.loading import Loading
from quantgate.evaluation.quality import BaselineScores, QualityEvaluator, QualityResult
from quantgate.verdicts.stats import Interval

#: the groups that are not a transformer block: what llama.cpp's quantizer sets with their own
#: options (--output-tensor-type, --token-embedding-type)
TOKEN_EMBEDDING, OUTPUT = "token_embd.weight", "output.weight"
#: the base type a probe is written with: any quantized type whose blocks fit every row (32
#: values), since every re-typed tensor is named by an override, which llama.cpp applies only
#: on a quantized base type
PROBE_CARRIER = "Q8_0"
_BLOCK = re.compile(r"^blk\.(\d+)\.")


def group_of(tensor: str) -> str:
    """``blk.N`` for a block's tensors, the tensor's own name otherwise."""
    m = _BLOCK.match(tensor)
    return f"blk.{m.group(1)}" if m else tensor.removesuffix(".weight")


def _group_order(name: str) -> tuple[int, int, str]:
    m = re.fullmatch(r"blk\.(\d+)", name)
    return (1, int(m.group(1)), "") if m else (0 if name == "token_embd" else 2, 0, name)


@dataclass(frozen=True)
class Group:
    """The tensors of one group the variant typed differently from the baseline."""

    name: str
    #: tensor -> the variant's type
    types: dict[str, str]
    bytes_variant: int
    bytes_baseline: int

    @property
    def type_summary(self) -> str:
        counts: dict[str, int] = {}
        for t in self.types.values():
            counts[t] = counts.get(t, 0) + 1
        return ", ".join(f"{n}x {t}" if n > 1 else t for t, n in sorted(counts.items()))


def groups(baseline: dict[str, TensorInfo], variant: dict[str, TensorInfo]) -> list[Group]:
    """The variant's re-typed tensors, by group, in model order (embedding, blocks, output).

    Raises:
        EvaluationError: the two files do not hold the same tensors (a pruned variant: its
            blocks are gone, not re-typed; diagnose the quantization on the pruned file).
    """
    if set(baseline) != set(variant):
        odd = sorted(set(baseline) ^ set(variant))
        raise EvaluationError(
            f"the variant and its baseline hold different tensors ({len(odd)}: {odd[:3]} ...); "
            "diagnose compares re-typed tensors: give a variant quantized from this baseline"
        )
    by_group: dict[str, dict[str, str]] = {}
    for name, info in variant.items():
        if info.type != baseline[name].type:
            by_group.setdefault(group_of(name), {})[name] = info.type
    out = []
    for name in sorted(by_group, key=_group_order):
        types = by_group[name]
        out.append(
            Group(
                name,
                types,
                sum(variant[t].n_bytes for t in types),
                sum(baseline[t].n_bytes for t in types),
            )
        )
    return out


def recipe(types: dict[str, str]) -> TensorTypes:
    """Overrides that give exactly ``types`` (tensor -> ggml type) and nothing else."""
    patterns = tuple(
        (f"^{re.escape(name)}$", t)
        for name, t in sorted(types.items())
        if name not in (TOKEN_EMBEDDING, OUTPUT)
    )
    return TensorTypes(patterns, types.get(OUTPUT), types.get(TOKEN_EMBEDDING))


def select_groups(found: list[Group], spec: str | None) -> list[Group]:
    """``spec``: None for every group, else comma-separated names and block ranges
    (``0-5,12,token_embd``).

    Raises:
        ConfigError: a name or block the variant does not re-type (listing those it does).
    """
    if not spec:
        return found
    by_name = {g.name: g for g in found}
    wanted: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if m := re.fullmatch(r"(\d+)-(\d+)", part):
            wanted += [f"blk.{i}" for i in range(int(m.group(1)), int(m.group(2)) + 1)]
        elif part.isdigit():
            wanted.append(f"blk.{part}")
        else:
            wanted.append(part)
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise ConfigError(
            f"--blocks: {', '.join(unknown)} not re-typed by the variant; it re-types "
            f"{', '.join(by_name)}"
        )
    return [by_name[w] for w in dict.fromkeys(wanted)]


@dataclass
class Probe:
    group: str
    types: str
    n_tensors: int
    bytes_variant: int
    bytes_baseline: int
    kld_mean: Interval
    ppl_increase_pct: Interval
    top1_agreement_pct: float


@dataclass
class Diagnosis:
    model: str
    compression: str
    n_chunks: int
    n_ctx: int
    n_groups_total: int
    #: the whole variant on the same chunks
    whole_kld: Interval
    whole_ppl_increase_pct: Interval
    whole_bytes: int
    baseline_bytes: int
    probes: list[Probe] = field(default_factory=list)
    seconds: float = 0.0

    def ranked(self) -> list[Probe]:
        return sorted(self.probes, key=lambda p: p.kld_mean.value, reverse=True)

    @property
    def probe_sum(self) -> float:
        return sum(p.kld_mean.value for p in self.probes)

    def of_whole(self, kld: float) -> float:
        """``kld`` as a share of the whole variant's KLD."""
        return kld / self.whole_kld.value if self.whole_kld.value > 0 else float("nan")

    @property
    def additivity(self) -> float:
        """The probes' KLD summed over the whole variant's: near 1 where the groups' errors
        add (only meaningful when every group was probed)."""
        return self.of_whole(self.probe_sum)

    def top_share(self, k: int) -> float:
        """The share of the whole variant's KLD the ``k`` most sensitive groups' probes hold."""
        return self.of_whole(sum(p.kld_mean.value for p in self.ranked()[:k]))

    # a section of the model's in summary.md / summary.html (quantgate.report.summary_html.Section)
    def markdown(self) -> str:
        return table(self)

    def html(self) -> str:
        import base64
        import html

        rows = "".join(
            f"<tr><td>{rank}</td><td>{html.escape(p.group)}</td><td>{html.escape(p.types)}</td>"
            f"<td>{p.bytes_variant / 1e6:.2f}</td><td>{_interval(p.kld_mean)}</td>"
            f"<td>{self.of_whole(p.kld_mean.value):.1%}</td><td>{p.ppl_increase_pct.value:+.2f}</td></tr>"
            for rank, p in enumerate(self.ranked(), 1)
        )
        png = base64.b64encode(plot_png(self)).decode()
        pair = html.escape(f"{self.model}-{self.compression}")
        return (
            f"<h3 id='diagnosis-{pair}'>Layer sensitivity: {pair}</h3>"
            f"<p class='note'>{html.escape(_budget_line(self))}</p>"
            f"<img alt='{pair} layer sensitivity' data-plot='diagnosis' "
            f"src='data:image/png;base64,{png}'>"
            "<table class='diagnosis'><tr><th>rank</th><th>group</th><th>types</th>"
            "<th>MB</th><th>KLD [95 % CI]</th><th>share of whole</th><th>PPL %</th></tr>"
            f"{rows}</table><p class='note'>{html.escape(_shares_line(self))}</p>"
        )


def _interval(i: Interval) -> str:
    return f"{i.value:.4f} [{i.low:.4f}, {i.high:.4f}]"


def table(d: Diagnosis) -> str:
    """The ranked markdown table, with the budget and the shares."""
    lines = [
        f"## Layer sensitivity: {d.model}-{d.compression}",
        "",
        _budget_line(d),
        "",
        "| rank | group | types | MB (variant / baseline) | KLD [95 % CI] | share of whole | "
        "PPL increase % |",
        "|---|---|---|---|---|---|---|",
    ]
    for rank, p in enumerate(d.ranked(), 1):
        lines.append(
            f"| {rank} | {p.group} | {p.types} | {p.bytes_variant / 1e6:.2f} / "
            f"{p.bytes_baseline / 1e6:.2f} | {_interval(p.kld_mean)} | "
            f"{d.of_whole(p.kld_mean.value):.1%} | {p.ppl_increase_pct.value:+.2f} |"
        )
    lines += ["", _shares_line(d)]
    return "\n".join(lines) + "\n"


def _budget_line(d: Diagnosis) -> str:
    return (
        f"Each row: the baseline with only that group at the variant's types; mean KLD against "
        f"the baseline on {d.n_chunks} chunks x {d.n_ctx} tokens [95 % CI over chunks]. "
        f"{len(d.probes)} of {d.n_groups_total} re-typed groups probed, in {d.seconds:.0f} s. "
        f"Whole variant on the same chunks: KLD {_interval(d.whole_kld)}, PPL "
        f"{d.whole_ppl_increase_pct.value:+.1f} %, {d.whole_bytes / 1e6:.1f} MB (baseline "
        f"{d.baseline_bytes / 1e6:.1f} MB)."
    )


def _shares_line(d: Diagnosis) -> str:
    ks = [k for k in (1, 3, 5, 10) if k <= len(d.probes)]
    shares = ", ".join(f"top {k}: {d.top_share(k):.0%}" for k in ks)
    line = f"Share of the whole variant's KLD the most sensitive groups' probes hold: {shares}."
    if len(d.probes) == d.n_groups_total:
        line += (
            f" All probes summed: {d.probe_sum:.4f}, {d.additivity:.2f}x the whole variant's "
            "KLD (1 where the groups' errors add)."
        )
    return line


def plot_png(d: Diagnosis) -> bytes:
    """A bar per probed group in model order, its interval as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probes = sorted(d.probes, key=lambda p: _group_order(p.group))
    values = [p.kld_mean.value for p in probes]
    errors = [
        [p.kld_mean.value - p.kld_mean.low for p in probes],
        [p.kld_mean.high - p.kld_mean.value for p in probes],
    ]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(probes) + 2), 3.6))
    ax.bar(range(len(probes)), values, yerr=errors, capsize=2, color="#4c72b0")
    ax.set_xticks(range(len(probes)))
    ax.set_xticklabels([p.group.removeprefix("blk.") for p in probes], rotation=90, fontsize=7)
    ax.set_ylabel("mean KLD vs baseline")
    ax.set_title(
        f"{d.model}-{d.compression}: each group alone at the variant's types "
        f"(whole variant {d.whole_kld.value:.3f})",
        fontsize=9,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


class Diagnoser:
    """Builds and scores the probes of one GGUF pair through the gate's loading: its artifacts
    and backends (children, as the gate loads them)."""

    def __init__(self, loading: Loading, pair: Pair, n_chunks: int) -> None:
        if pair.model.backend != "llama_cpp":
            raise ConfigError(
                f"{pair.model_key}-{pair.compression_name}: diagnose probes GGUF files "
                f"(llama.cpp's per-tensor types); this entry's backend is {pair.model.backend}"
            )
        self.loading, self.pair = loading, pair
        ppl = loading.registry.evaluation_for(pair.model_key).perplexity
        self.evaluator = QualityEvaluator(
            ppl.model_copy(update={"max_chunks": n_chunks}), loading.registry.resolve(ppl.text)
        )
        self.baseline = loading.artifacts.baseline(pair.model_key)
        self.variant = loading.artifacts.variant(pair)
        self.base_tensors = read_tensors(self.baseline.path)
        self.variant_tensors = read_tensors(self.variant.path)
        self._check_unquantized()
        #: the groups the variant re-types, in model order
        self.found = groups(self.base_tensors, self.variant_tensors)
        #: every tensor the variant re-types, at the baseline's type: a probe's background
        self.rest = {t: self.base_tensors[t].type for g in self.found for t in g.types}

    def _check_unquantized(self) -> None:
        weights = {
            i.type.upper()
            for n, i in self.base_tensors.items()
            if n.endswith(".weight") and "norm" not in n
        }
        if len(weights) != 1 or not weights <= UNQUANTIZED_TYPES:
            raise ConfigError(
                f"{self.pair.model_key}: diagnose writes probes from an unquantized baseline "
                f"(F16, BF16 or F32); this baseline's weights are {sorted(weights)}"
            )

    def probe(self, label: str, types: dict[str, str]) -> QualityResult:
        """The score of the baseline with ``types`` (tensor -> ggml type) re-typed.

        The score is cached, keyed by the baseline's scores, the types and llama.cpp's
        version; the probe file is deleted once scored: each is a whole baseline-sized model
        (an 8B model's 32 block probes would hold 0.5 TB), and llama.cpp's quantizer writes the
        same bytes again from the same inputs."""
        # every re-typed tensor named, the group's at the variant's types and the rest at the
        # baseline's: llama.cpp applies --tensor-type only on a quantized base type
        # (llama-quant.cpp, llama_tensor_get_type), so the base is a carrier (PROBE_CARRIER)
        # whose own rules never reach a tensor
        types = {**self.rest, **types}
        base = self.base_scores()
        key = cache_key(
            probe_of=base.key,
            carrier=PROBE_CARRIER,
            types=sorted(types.items()),
            llama_cpp=llama_cpp_version(),
        )
        path = cache_root() / "results" / "diagnosis" / f"{key}.json"
        if (cached := read_result(path)) is not None:
            return QualityResult(**cached)
        with locked(path):
            if (cached := read_result(path)) is not None:
                return QualityResult(**cached)
            folder = cache_root() / "tmp"
            folder.mkdir(parents=True, exist_ok=True)
            gguf = folder / f"{label}-{key}.gguf"
            try:
                llama_quantize(
                    self.baseline.path, gguf, PROBE_CARRIER, label, overrides=recipe(types)
                )
                written = check_types(label, gguf, types)
                # its identity is the key: the scores' cache is keyed by it, not by the bytes
                # (hashing each probe's whole file would cost as much as scoring it)
                info = replace(
                    self.baseline.info,
                    path=gguf,
                    file_size=gguf.stat().st_size,
                    tensor_bytes=sum(t.n_bytes for t in written.values()),
                )
                result = self.score(Artifact(label, gguf, f"probe-{key}", info))
            finally:
                gguf.unlink(missing_ok=True)
            write_result(path, asdict(result))
        return result

    def base_scores(self) -> BaselineScores:
        return self.evaluator.baseline(self.loading.backend(self.baseline, self.pair.model_key))

    def score(self, artifact: Artifact) -> QualityResult:
        backend = self.loading.backend(artifact, self.pair.model_key)
        return self.evaluator.compare(self.base_scores(), backend)

    def run(self, blocks: str | None = None) -> Diagnosis:
        start = time.perf_counter()
        chosen = select_groups(self.found, blocks)
        whole = self.score(self.variant)
        n_ctx = self.evaluator.settings.n_ctx
        d = Diagnosis(
            self.pair.model_key,
            self.pair.compression_name,
            whole.n_chunks,
            n_ctx,
            len(self.found),
            whole.intervals["kld_mean"],
            whole.intervals["ppl_increase_pct"],
            sum(i.n_bytes for i in self.variant_tensors.values()),
            sum(i.n_bytes for i in self.base_tensors.values()),
        )
        label = f"{self.pair.model_key}-{self.pair.compression_name}"
        for i, g in enumerate(chosen, 1):
            with progress.step(f"{label}: probe {i}/{len(chosen)}, {g.name} at {g.type_summary}"):
                result = self.probe(f"{label}-probe-{g.name}", g.types)
            d.probes.append(
                Probe(
                    g.name,
                    g.type_summary,
                    len(g.types),
                    g.bytes_variant,
                    g.bytes_baseline,
                    result.intervals["kld_mean"],
                    result.intervals["ppl_increase_pct"],
                    result.top1_agreement_pct,
                )
            )
        d.seconds = time.perf_counter() - start
        return d


def check_types(label: str, path: Path, types: dict[str, str]) -> dict[str, TensorInfo]:
    """``path``'s tensors, which must hold each tensor of ``types`` at its type.

    Raises:
        EvaluationError: naming the first tensor llama.cpp wrote otherwise.
    """
    got = read_tensors(path)
    wrong = {n: got[n].type for n, t in types.items() if got[n].type != t}
    if wrong:
        name, have = next(iter(wrong.items()))
        raise EvaluationError(
            f"{label}: llama.cpp wrote {name} as {have}, not {types[name]} ({len(wrong)} "
            "tensor(s) differ): this quantizer does not take that type for that tensor"
        )
    return got


def pair_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    """The options that name a pair and where its files go (diagnose and propose)."""
    parser.add_argument("--model", required=True, help="the registry's model key")
    parser.add_argument("--compression", required=True, help="the pair's compression name")
    parser.add_argument("--registry", type=Path, default=Path("fixtures/models.yaml"))
    parser.add_argument("--thresholds", type=Path, default=Path("thresholds"))
    parser.add_argument("--threads", type=int, help="threads per probe (default: every core)")
    parser.add_argument("--out", type=Path, default=Path(default_out))


def open_pair(args: argparse.Namespace) -> tuple[Configuration, Loading, Pair]:
    """The configuration, the loading and the pair that ``pair_arguments`` name."""
    config = load_configuration(
        args.registry, args.thresholds, [args.model], [args.compression],
        args.registry.parent.parent,
    )  # fmt: skip
    (pair,) = config.registry.pairs([args.model], [args.compression])
    return config, Loading(config.registry, n_threads=args.threads), pair


def write(d: Diagnosis, out: Path) -> dict[str, Path]:
    """``out``/<pair>.md, .json and .png."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{d.model}-{d.compression}"
    md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
    md.write_text(table(d))
    doc = asdict(d) | {
        "additivity": d.additivity,
        "top_share": {k: d.top_share(k) for k in (1, 3, 5, 10)},
    }
    js.write_text(json.dumps(doc, indent=1))
    png = stem.with_suffix(".png")
    png.write_bytes(plot_png(d))
    return {"table": md, "json": js, "plot": png}


def diagnose_failed(
    config: Configuration,
    rows: list[dict],
    n_chunks: int,
    n_threads: int | None,
    out: Path,
) -> list[Diagnosis]:
    """--diagnose: a diagnosis of every GGUF pair whose perplexity or KLD gate failed in
    ``rows`` (a declared canary's too: why it fails is the question), written to ``out``.
    A pair that cannot be diagnosed (another backend, a pruned file) is said, not raised: the
    run's verdicts stand either way."""
    failed = sorted(
        {
            (r["model"], r["compression"])
            for r in rows
            if r.get("gate") in ("perplexity", "kld") and r.get("verdict") == "FAIL"
        }
    )
    if not failed:
        return []
    loading = Loading(config.registry, n_threads=n_threads)
    done = []
    try:
        for model, compression in failed:
            (pair,) = config.registry.pairs([model], [compression])
            try:
                d = Diagnoser(loading, pair, n_chunks).run()
            except QuantgateError as exc:
                progress.say(f"{model}-{compression}: not diagnosed: {exc}")
                continue
            write(d, out)
            done.append(d)
    finally:
        loading.close()
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quantgate.diagnose", description=__doc__.split("\n\n")[0]
    )
    pair_arguments(parser, "reports/diagnosis")
    parser.add_argument(
        "--chunks", type=int, default=4, help="perplexity chunks per probe (default 4)"
    )
    parser.add_argument(
        "--blocks",
        help="groups to probe: block numbers and ranges, token_embd, output "
        "(default: every group the variant re-types)",
    )
    args = parser.parse_args(argv)
    if args.chunks < 1:
        parser.error("--chunks must be at least 1")
    try:
        _, loading, pair = open_pair(args)
        try:
            diagnoser = Diagnoser(loading, pair, args.chunks)
            d = diagnoser.run(args.blocks)
            files = write(d, args.out)
            print(table(d))
            print("wrote " + ", ".join(str(p) for p in files.values()))
        finally:
            loading.close()
    except QuantgateError as exc:
        print(f"quantgate diagnose: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
