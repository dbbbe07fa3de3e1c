"""Perplexity and KL divergence the way llama.cpp's llama-perplexity computes them.

Convention (tools/perplexity/perplexity.cpp, ``perplexity()`` and ``kl_divergence()``):

* tokenize the whole text once, with BOS if the model adds one;
* split into non-overlapping chunks of ``n_ctx`` tokens, dropping the remainder, and require
  at least ``2 * n_ctx`` tokens;
* in each chunk, replace the first token with BOS (if the model adds one) and evaluate from an
  empty KV cache;
* score only the second half: logits row ``j`` predicts token ``j + 1`` for
  ``j = n_ctx // 2 .. n_ctx - 2``, i.e. ``n_ctx - 1 - n_ctx // 2`` tokens per chunk;
* PPL = exp(mean NLL over every scored token).

Pure numpy: no model here, so the math is unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quantgate.backends.row_threads import row_map
from quantgate.errors import DataError, EvaluationError


def make_chunks(
    tokens: Sequence[int], n_ctx: int, bos: int | None, max_chunks: int = 0
) -> list[list[int]]:
    """Chunks of ``n_ctx`` tokens, each starting with BOS where the model adds one.

    Raises:
        DataError: fewer than ``2 * n_ctx`` tokens (llama-perplexity's own minimum).
    """
    if len(tokens) < 2 * n_ctx:
        raise DataError(
            f"the text has {len(tokens)} tokens; perplexity with n_ctx={n_ctx} needs at least "
            f"{2 * n_ctx}: use a longer text or a smaller n_ctx"
        )
    n_chunks = len(tokens) // n_ctx
    if max_chunks:
        n_chunks = min(n_chunks, max_chunks)
    chunks = []
    for i in range(n_chunks):
        chunk = list(tokens[i * n_ctx : (i + 1) * n_ctx])
        if bos is not None:
            chunk[0] = bos
        chunks.append(chunk)
    return chunks


def first_scored(n_ctx: int) -> int:
    return n_ctx // 2


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, float32 out, row ranges on the process's cores.

    The exponentials are float32 and only their sum is float64: 12x faster than float64
    throughout on a 49k vocabulary, and within 4e-6 nats of it per entry (1e-7 on a mean NLL).
    """
    x = np.asarray(logits, dtype=np.float32)
    if x.ndim == 1:
        return _log_softmax_rows(x[None, :])[0]
    out = np.empty(x.shape, dtype=np.float32)

    def rows(lo: int, hi: int) -> None:
        out[lo:hi] = _log_softmax_rows(x[lo:hi])

    row_map(rows, len(x))
    return out


def _log_softmax_rows(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=-1, keepdims=True, dtype=np.float64))
    shifted -= lse.astype(np.float32)
    return shifted


def scored_logprobs(
    logits: np.ndarray, chunk: Sequence[int], what: str, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Log-probabilities of the scored rows of one chunk and the NLL of each scored token.
    ``logits`` holds the rows from ``start`` on (``Backend.logits(chunk, start)``).

    Raises:
        EvaluationError: NaN or inf in the logits (a broken model), naming ``what``.
    """
    n_ctx = len(chunk)
    first = first_scored(n_ctx)
    if start > first:
        raise ValueError(f"logits from row {start} miss the scored rows from {first}")
    rows = logits[first - start : n_ctx - 1 - start]
    if not np.isfinite(rows).all():
        bad = int((~np.isfinite(rows)).any(axis=1).sum())
        raise EvaluationError(
            f"{what}: {bad} of {len(rows)} scored positions have NaN/inf logits; "
            "the model file is broken"
        )
    logp = log_softmax(rows)
    targets = np.asarray(chunk[first + 1 : n_ctx])
    nll = -logp[np.arange(len(targets)), targets]
    return logp, nll


@dataclass(frozen=True)
class KLDStats:
    kld_mean: float
    kld_p99: float
    top1_agreement_pct: float
    n_tokens: int


def kl_divergence_rows(base_logp: np.ndarray, comp_logp: np.ndarray) -> np.ndarray:
    """Per-row KL(P_base || P_comp) = sum_i p_i (log p_i - log q_i), in nats.

    float32 terms, float64 sums (7x faster than float64 throughout, within 1e-6 nats per row).
    """
    base = np.asarray(base_logp, dtype=np.float32)
    p = np.exp(base)
    # Renormalize p: the baseline is stored in float16, whose rounding leaves sum(p) 1 +- 1e-3.
    norm = p.sum(axis=-1, dtype=np.float64)
    return (p * (base - comp_logp)).sum(axis=-1, dtype=np.float64) / norm


def kld_stats(kld: np.ndarray, same_top1: np.ndarray) -> KLDStats:
    if len(kld) == 0:
        raise EvaluationError("KL divergence over zero tokens: nothing was scored")
    return KLDStats(
        kld_mean=float(np.mean(kld)),
        kld_p99=float(np.percentile(kld, 99)),
        top1_agreement_pct=float(np.mean(same_top1) * 100.0),
        n_tokens=len(kld),
    )


def perplexity(nll: np.ndarray) -> float:
    if len(nll) == 0:
        raise EvaluationError("perplexity over zero tokens: nothing was scored")
    return float(np.exp(np.mean(nll)))
