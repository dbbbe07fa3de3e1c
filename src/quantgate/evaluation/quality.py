"""Perplexity and KLD of a compressed model against its baseline, cached on disk.

The baseline's side of KLD over the scored tokens is computed once and kept in bounded form (per
token its top-k log-probabilities, the tail's mass and a sample of the tail,
:mod:`quantgate.evaluation.kld_top_k`; llama-perplexity's ``--kl-divergence-base`` file keeps the
whole vocabulary), so every variant is compared with it without re-running the baseline. A variant's
result is a small JSON keyed by both artifacts' sha256 and every setting, so a re-run only
reads it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from quantgate import progress
from quantgate.artifacts.cache import (
    build_once,
    cache_key,
    cache_root,
    locked,
    read_json,
    read_result,
    write_json_atomic,
    write_result,
)
from quantgate.backends.base import ScoredModel, result_settings
from quantgate.backends.row_threads import row_map
from quantgate.configuration.constants import SEQUENTIAL_CHUNK_METRICS
from quantgate.configuration.registry import PerplexitySettings
from quantgate.errors import DataError, EvaluationError
from quantgate.evaluation.kld_top_k import (
    clamped,
    kl_divergence_top_k,
    row_dtype,
    top1_agrees,
    top_k_rows,
)
from quantgate.evaluation.perplexity import (
    first_scored,
    kld_stats,
    make_chunks,
    perplexity,
    scored_logprobs,
)
from quantgate.verdicts.sequential import SequentialVerdict, drive, mean_look
from quantgate.verdicts.stats import (
    Interval,
    chunk_percentile_interval,
    chunk_ratio_interval,
    mean_interval,
)

#: Bump when the computation below changes, so old cache entries are not reused.
METHOD_VERSION = 9  # 7: the baseline's top-k log-probs and tail mass instead of every row;
# 8: the tail sample's offsets no longer depend on how many cores split the rows;
# 9: tail masses summed over the tail, not 1 - the top-k's sum (which cancels to 0 in float32)


def read_text(path: Path) -> str:
    """The evaluation text. Raises DataError if missing or blank."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"evaluation text not found: {path}; fix evaluation.perplexity.text"
        ) from None
    if not text.strip():
        raise DataError(
            f"evaluation text {path} is empty; point evaluation.perplexity.text at a non-empty file"
        )
    return text


@dataclass(frozen=True)
class BaselineScores:
    label: str
    key: str
    ppl: float
    n_scored: int
    tokens_sha: str
    top_k_path: Path
    #: mean NLL of each chunk, for paired intervals over chunks
    chunk_nll: list[float]

    def top_k(self) -> np.ndarray:
        """Per scored token, the baseline's top-k ids and log-probs and its tail mass."""
        return np.load(self.top_k_path, mmap_mode="r")


@dataclass(frozen=True)
class QualityResult:
    ppl: float
    ppl_baseline: float
    n_scored: int
    n_chunks: int
    kld_mean: float
    kld_p99: float
    top1_agreement_pct: float
    #: per-chunk means (every chunk scores the same number of tokens), for paired intervals
    chunk_nll: list[float]
    chunk_nll_baseline: list[float]
    chunk_kld: list[float]
    #: per chunk, the share of scored tokens whose argmax matches the baseline's (%)
    chunk_top1: list[float]
    #: per-token KLD (chunk after chunk, equal counts), for the p99's interval over chunks
    token_kld: list[float]
    #: mode sequential: where each sequential metric's gate stopped (the lists above hold the
    #: chunks used); None for a fixed-sample result
    sequential: dict[str, SequentialVerdict] | None = None

    @property
    def intervals(self) -> dict[str, Interval]:
        """95 % bootstrap intervals over chunks, for the metrics that have one."""
        ppl = chunk_ratio_interval(self.chunk_nll_baseline, self.chunk_nll)

        def nats(pct: float) -> float:  # ln_ppl_ratio is a monotone map of ppl_increase_pct
            return math.log1p(pct / 100.0)

        return {
            "ppl_increase_pct": ppl,
            "ln_ppl_ratio": Interval(nats(ppl.value), nats(ppl.low), nats(ppl.high)),
            "kld_mean": mean_interval(self.chunk_kld),
            "kld_p99": chunk_percentile_interval(
                np.asarray(self.token_kld).reshape(self.n_chunks, -1), 99.0
            ),
            "top1_agreement_pct": mean_interval(self.chunk_top1),
        }

    @property
    def metrics(self) -> dict[str, float]:
        """The gated values (names from quantgate.configuration.constants.METRICS)."""
        return {
            "ppl_increase_pct": (self.ppl / self.ppl_baseline - 1.0) * 100.0,
            "ln_ppl_ratio": math.log(self.ppl / self.ppl_baseline),
            "kld_mean": self.kld_mean,
            "kld_p99": self.kld_p99,
            "top1_agreement_pct": self.top1_agreement_pct,
        }


class QualityEvaluator:
    """Runs the llama-perplexity protocol on a text for a baseline and its variants."""

    def __init__(self, settings: PerplexitySettings, text_path: Path) -> None:
        self.settings = settings
        self.text_path = text_path
        self.text = read_text(text_path)
        self.text_sha = hashlib.sha256(self.text.encode()).hexdigest()

    def _chunks(self, backend: ScoredModel) -> list[list[int]]:
        tokens = backend.tokenize(self.text, add_special=True)
        try:
            return make_chunks(
                tokens, self.settings.n_ctx, backend.bos_token_id, self.settings.max_chunks
            )
        except DataError as exc:
            raise DataError(f"{self.text_path}: {exc}") from None

    def full_logprobs(self, backend: ScoredModel) -> np.ndarray:
        """Every scored token's log-probabilities over the whole vocabulary, chunk after chunk
        (``[n_scored, n_vocab]``): what the bounded KLD baseline is measured against."""
        first = first_scored(self.settings.n_ctx)
        label = backend.artifact.label
        return np.concatenate(
            [
                scored_logprobs(backend.logits(chunk, first), chunk, label, first)[0]
                for chunk in self._chunks(backend)
            ]
        )

    def _settings_key(self, backend: ScoredModel) -> dict[str, object]:
        return {
            "text": self.text_sha,
            "n_ctx": self.settings.n_ctx,
            "max_chunks": self.settings.max_chunks,
            "kld_top_k": self.settings.kld_top_k,
            "kld_tail_samples": self.settings.kld_tail_samples,
            **result_settings(backend.name, backend.settings),
            "method": METHOD_VERSION,
        }

    def baseline(self, backend: ScoredModel) -> BaselineScores:
        """Score the baseline once; later calls (and later runs) read the cache."""
        label = backend.artifact.label
        key = cache_key(artifact=backend.artifact.sha256, **self._settings_key(backend))
        folder = cache_root() / "baselines" / key
        meta_path = folder / "meta.json"
        npy = folder / "top_k.npy"

        def build(partial: Path) -> None:
            chunks = self._chunks(backend)
            first = first_scored(self.settings.n_ctx)
            per_chunk = self.settings.n_ctx - 1 - first
            k, m = self.settings.kld_top_k, self.settings.kld_tail_samples
            out = np.lib.format.open_memmap(
                partial,
                mode="w+",
                dtype=row_dtype(*clamped(backend.n_vocab, k, m)),
                shape=(len(chunks) * per_chunk,),
            )
            nll_all = []
            with progress.step(
                f"{label}: baseline log-probs, {len(chunks)} chunks x {self.settings.n_ctx} tokens"
            ):
                for i, chunk in enumerate(chunks):
                    logp, nll = scored_logprobs(backend.logits(chunk, first), chunk, label, first)
                    out[i * per_chunk : (i + 1) * per_chunk] = top_k_rows(logp, k, m, seed=i)
                    nll_all.append(nll)
                    progress.say(
                        f"{label}: chunk {i + 1}/{len(chunks)}, running PPL "
                        f"{perplexity(np.concatenate(nll_all)):.4f}"
                    )
            out.flush()
            del out
            nll = np.concatenate(nll_all)
            write_json_atomic(
                meta_path,
                {
                    "ppl": perplexity(nll),
                    "n_scored": len(nll),
                    "tokens_sha": _tokens_sha(chunks),
                    "chunk_nll": [float(c.mean()) for c in nll_all],
                },
            )

        build_once(npy, build, companions=(meta_path,))
        meta = read_json(meta_path)
        if meta is None:
            raise EvaluationError(f"{label}: baseline cache {folder} has no meta.json; delete it")
        return BaselineScores(
            label, key, meta["ppl"], meta["n_scored"], meta["tokens_sha"], npy, meta["chunk_nll"]
        )

    def compare(
        self, base: BaselineScores, backend: ScoredModel, chunk_ids: list[int] | None = None
    ) -> QualityResult:
        """PPL, KLD and top-1 agreement of ``backend``'s model against ``base`` (cached), over
        every chunk or over ``chunk_ids`` only (one batch of a sequential gate, its own cache
        entry: a rerun or a later full run reads it)."""
        subset = {} if chunk_ids is None else {"chunks": list(chunk_ids)}
        key = cache_key(
            artifact=backend.artifact.sha256,
            baseline=base.key,
            **self._settings_key(backend),
            **subset,
        )
        result_path = cache_root() / "results" / "quality" / f"{key}.json"
        cached = read_result(result_path)
        if cached is not None:
            return QualityResult(**cached)
        # the PPL and KLD tests of one pair may run on two xdist workers: one computes
        with locked(result_path):
            cached = read_result(result_path)
            if cached is not None:
                return QualityResult(**cached)
            result = self._compare(base, backend, chunk_ids)
            write_result(result_path, asdict(result))
        return result

    def _compare(
        self, base: BaselineScores, backend: ScoredModel, chunk_ids: list[int] | None
    ) -> QualityResult:
        label = backend.artifact.label
        chunks = self._chunks(backend)
        if _tokens_sha(chunks) != base.tokens_sha:
            raise EvaluationError(
                f"{label}: its tokenizer splits {self.text_path} differently from "
                f"{base.label}'s; KLD needs identical token ids"
            )
        ids = range(len(chunks)) if chunk_ids is None else chunk_ids
        first = first_scored(self.settings.n_ctx)
        per_chunk = self.settings.n_ctx - 1 - first
        base_top_k = base.top_k()
        nll_all, kld_all, top1_all = [], [], []
        with progress.step(f"{label}: PPL and KLD vs {base.label}, {len(ids)} chunks"):
            for i in ids:
                chunk = chunks[i]
                logp, nll = scored_logprobs(backend.logits(chunk, first), chunk, label, first)
                nll_all.append(nll)
                kld, top1 = _against_baseline(base_top_k[i * per_chunk : (i + 1) * per_chunk], logp)
                kld_all.append(kld)
                top1_all.append(top1)
        stats = kld_stats(np.concatenate(kld_all), np.concatenate(top1_all))
        chunk_nll_baseline = [base.chunk_nll[i] for i in ids]
        return QualityResult(
            ppl=perplexity(np.concatenate(nll_all)),
            # every chunk scores the same number of tokens: PPL is exp of the chunks' mean NLL
            ppl_baseline=base.ppl if chunk_ids is None else _ppl_of(chunk_nll_baseline),
            n_scored=stats.n_tokens,
            n_chunks=len(ids),
            kld_mean=stats.kld_mean,
            kld_p99=stats.kld_p99,
            top1_agreement_pct=stats.top1_agreement_pct,
            chunk_nll=[float(c.mean()) for c in nll_all],
            chunk_nll_baseline=chunk_nll_baseline,
            chunk_kld=[float(k.mean()) for k in kld_all],
            chunk_top1=[float(t.mean() * 100.0) for t in top1_all],
            # 6 significant digits: the p99's interval needs the distribution, not the bits
            token_kld=[float(f"{v:.6g}") for v in np.concatenate(kld_all)],
        )


def _ppl_of(chunk_nll: list[float]) -> float:
    return float(np.exp(np.mean(chunk_nll)))


def joined(parts: list[QualityResult]) -> QualityResult:
    """One result over the chunks of several (the batches a sequential gate scored): the
    per-chunk lists concatenated, the summaries recomputed from them."""
    if not parts:
        raise EvaluationError("PPL and KLD over zero chunks: nothing was scored")

    def cat(name: str) -> list[float]:
        return [v for part in parts for v in getattr(part, name)]

    token_kld, chunk_top1 = cat("token_kld"), cat("chunk_top1")
    chunk_nll, chunk_nll_baseline = cat("chunk_nll"), cat("chunk_nll_baseline")
    return QualityResult(
        ppl=_ppl_of(chunk_nll),
        ppl_baseline=_ppl_of(chunk_nll_baseline),
        n_scored=sum(part.n_scored for part in parts),
        n_chunks=len(chunk_nll),
        # equal tokens per chunk: the mean of the chunks' means is the mean over tokens
        kld_mean=float(np.mean(cat("chunk_kld"))),
        kld_p99=float(np.percentile(token_kld, 99)),
        top1_agreement_pct=float(np.mean(chunk_top1)),
        chunk_nll=chunk_nll,
        chunk_nll_baseline=chunk_nll_baseline,
        chunk_kld=cat("chunk_kld"),
        chunk_top1=chunk_top1,
        token_kld=token_kld,
    )


def _chunk_values(result: QualityResult, metric: str) -> np.ndarray:
    if metric == "kld_mean":
        return np.asarray(result.chunk_kld)
    # exp(mean NLL difference) is the PPL ratio (every chunk scores the same number of tokens)
    return np.asarray(result.chunk_nll) - np.asarray(result.chunk_nll_baseline)


def _to_chunk_units(metric: str, value: float) -> float:
    return math.log1p(value / 100.0) if metric == "ppl_increase_pct" else value


def _from_chunk_units(metric: str, v: SequentialVerdict) -> SequentialVerdict:
    if metric != "ppl_increase_pct":
        return v

    def pct(x: float) -> float:
        return math.expm1(x) * 100.0 if math.isfinite(x) else x

    return SequentialVerdict(
        v.decision, v.n_used, v.n_available, pct(v.low), pct(v.high), pct(v.estimate)
    )


def sequential_looks(
    result: QualityResult, n_chunks: int, bounds: dict[str, float], alpha: float = 0.05
) -> dict[str, SequentialVerdict]:
    """Each bounded metric's gate after the chunks of ``result`` (in their sampled order)."""
    return {
        name: _from_chunk_units(
            name,
            mean_look(_chunk_values(result, name), n_chunks, _to_chunk_units(name, bound), alpha),
        )
        for name, bound in bounds.items()
    }


def compare_sequential(
    evaluator: QualityEvaluator,
    base: BaselineScores,
    backend: ScoredModel,
    bounds: dict[str, float],
    batch: int,
) -> QualityResult:
    """PPL/KLD with mode sequential on ``bounds`` (metric: threshold, of SEQUENTIAL_CHUNK_METRICS):
    the chunks in one seeded random order, ``batch`` at a time (each batch its own cache
    entry), a look after each, until every bounded metric's confidence sequence has decided or
    the chunks run out. A metric keeps the verdict of its first deciding look; the result holds
    every chunk used, for the metrics judged with their own modes."""
    unknown = set(bounds) - set(SEQUENTIAL_CHUNK_METRICS)
    if unknown:
        raise ValueError(
            f"mode sequential over chunks: {sorted(unknown)} not among {SEQUENTIAL_CHUNK_METRICS}"
        )
    n = len(base.chunk_nll)
    parts: list[QualityResult] = []
    label = backend.artifact.label

    def score_batch(chunk_ids: list[int]) -> None:
        parts.append(evaluator.compare(base, backend, chunk_ids))

    def look_open(names: Collection[str]) -> dict[str, SequentialVerdict]:
        return sequential_looks(joined(parts), n, {k: bounds[k] for k in names})

    def say(name: str, state: SequentialVerdict) -> None:
        progress.say(
            f"{label}: {name} sequential, {state.n_used}/{n} chunks: {state.estimate:.4g}, "
            f"95 % sequence [{state.low:.4g}, {state.high:.4g}] vs {bounds[name]:g}: "
            f"{state.decision}"
        )

    stops = drive(n, batch, score_batch, look_open, list(bounds), say)
    return replace(joined(parts), sequential=stops)


def _against_baseline(base_rows: np.ndarray, logp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, KL(baseline || variant) from the baseline's bounded rows and whether both
    argmaxes agree, row ranges on the process's cores."""

    def rows(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        ref = np.asarray(base_rows[lo:hi])
        return kl_divergence_top_k(ref, logp[lo:hi]), top1_agrees(ref, logp[lo:hi])

    parts = row_map(rows, len(logp))
    return np.concatenate([k for k, _ in parts]), np.concatenate([t for _, t in parts])


def _tokens_sha(chunks: list[list[int]]) -> str:
    return hashlib.sha256(np.asarray(chunks, dtype=np.int64).tobytes()).hexdigest()
