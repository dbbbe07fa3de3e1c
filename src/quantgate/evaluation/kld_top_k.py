"""The baseline's side of KL divergence in bounded form: top-k, tail mass and a tail sample.

Storing the baseline's whole log-probability rows costs ``n_vocab`` numbers per scored token
(98 KB for a 49k vocabulary in float16, 512 KB for Gemma-2's 256k; llama-perplexity's own base
file for Llama-3 on wiki.test.raw is 37 GiB). What KLD needs of the baseline fits a bound that
does not grow with the vocabulary. Split the vocabulary into the baseline's ``k`` most probable
tokens T and the tail (mass ``p_t = 1 - sum_T p``; the variant's ``q_t = 1 - sum_T q``)::

    KL(P || Q) = sum_{i in T} p_i log(p_i / q_i)      exact from the stored top-k
               + p_t log(p_t / q_t)                   the tail as one bin
               + p_t KL(P_tail || Q_tail)             inside the tail, normalised

The first two terms alone are a lower bound (merging bins never increases a divergence) and on
a 135M model they miss 10 % of the KLD at k = 256: small models spread their mass. The third is
estimated from ``m`` tail tokens drawn from ``P_tail`` by systematic sampling (stored with their
log-probs), with the non-negative unbiased estimator ``E_P[r - 1 - log r]``, ``r = q / p``
(the "k3" estimator, J. Schulman, "Approximating KL Divergence", 2020; unbiased because
``E_P[r] = 1``). So each token's estimate is >= 0, exactly 0 for a model against itself, and
unbiased for the full-vocabulary KLD; its noise averages out over a text's tokens.
``benchmarks/kld_store_error.py`` measures the error. A scored token costs ``8 (k + m) + 8``
bytes at any vocabulary.

Pure numpy: the formulas are unit-tested on their own.
"""

from __future__ import annotations

import numpy as np

from quantgate.backends.row_threads import row_map

#: below this a tail mass is treated as this (both sides alike, so a model against itself is 0)
TAIL_FLOOR = 1e-30
#: a tail lighter than this has no inside term (its bound p_t * log(p_t/floor) is negligible)
TAIL_NEGLIGIBLE = 1e-9
#: rows sampled at once: bounds the tail CDFs held at once to this many rows x n_vocab
SAMPLE_BLOCK = 32


def row_dtype(k: int, m: int) -> np.dtype:
    """One stored row: the top-k ids (most probable first) and log-probs, the tail mass, and
    ``m`` tail tokens drawn from the baseline's tail distribution with their log-probs."""
    return np.dtype(
        [
            ("ids", np.int32, (k,)),
            ("logp", np.float32, (k,)),
            ("tail", np.float64),
            ("tail_ids", np.int32, (m,)),
            ("tail_logp", np.float32, (m,)),
        ]
    )


def bytes_per_token(k: int, m: int) -> int:
    return row_dtype(k, m).itemsize


def clamped(n_vocab: int, k: int, m: int) -> tuple[int, int]:
    """``k`` at most the vocabulary; no tail sample when the top-k is the whole vocabulary."""
    k = min(k, n_vocab)
    return k, (m if k < n_vocab else 0)


def top_k_rows(logp: np.ndarray, k: int, m: int, seed: int = 0) -> np.ndarray:
    """The bounded rows of ``logp`` (``[n, n_vocab]`` log-probabilities); ``k`` is clamped to
    the vocabulary (no tail, no sample at ``k = n_vocab``). Ties break toward the lower id, as
    ``argmax`` does, so the first id of a row is the baseline's argmax. ``seed`` fixes the tail
    sample, the same on any number of cores; ``m = 0`` keeps none (the one-bin lower bound)."""
    logp = np.asarray(logp, dtype=np.float32)
    k, m = clamped(logp.shape[-1], k, m)
    out = np.empty(len(logp), dtype=row_dtype(k, m))
    # one offset per row, drawn before the rows are split over threads: the split depends on
    # the core count, and a sample seeded per block would differ between machines (and between
    # a serial run and an xdist worker on the same machine)
    offsets = np.random.default_rng(seed).random(len(logp))

    def rows(lo: int, hi: int) -> None:
        block = logp[lo:hi]
        ids = _top_ids(block, k)
        values = np.take_along_axis(block, ids, axis=-1)
        order = np.lexsort((ids, -values), axis=-1)
        out["ids"][lo:hi] = np.take_along_axis(ids, order, axis=-1)
        out["logp"][lo:hi] = np.take_along_axis(values, order, axis=-1)
        out["tail"][lo:hi] = _tail_mass(block, ids)
        if m:
            for a in range(lo, hi, SAMPLE_BLOCK):
                b = min(a + SAMPLE_BLOCK, hi)
                picks = _tail_sample(logp[a:b], out["ids"][a:b], m, offsets[a:b])
                out["tail_ids"][a:b] = picks
                out["tail_logp"][a:b] = np.take_along_axis(logp[a:b], picks, axis=-1)

    row_map(rows, len(logp))
    return out


def _top_ids(block: np.ndarray, k: int) -> np.ndarray:
    """Per row, the ids of the ``k`` largest entries (ties at the k-th value: the lowest ids),
    in id order. A value partition and a mask: 4x faster than ``argpartition`` on a 49k row."""
    n_rows, n_vocab = block.shape
    kth = np.partition(block, n_vocab - k, axis=-1)[:, n_vocab - k, None]
    above = block > kth
    ties = block == kth
    room = k - above.sum(axis=-1, keepdims=True)  # how many tied entries each row still takes
    chosen = above | (ties & (np.cumsum(ties, axis=-1, dtype=np.int32) <= room))
    return np.nonzero(chosen)[1].reshape(n_rows, k)


def _tail_mass(logp: np.ndarray, top_ids: np.ndarray) -> np.ndarray:
    """The summed probability of every entry outside ``top_ids`` (float64 sum), floored.

    Summed directly, not as 1 - the top-k's sum: with float32 log-probs that difference
    cancels. A confident row whose tail holds 1e-8 can come out at 0 (the floor) while its tail
    tokens keep their own probabilities, and the inside term's ratio q_i / q_t then explodes
    (one token of Q8_0 on wiki.test.raw scored a KLD of 4e14 that way)."""
    p = np.exp(np.asarray(logp, dtype=np.float32))
    np.put_along_axis(p, np.asarray(top_ids), 0.0, axis=-1)
    return np.maximum(p.sum(axis=-1, dtype=np.float64), TAIL_FLOOR)


def _tail_sample(logp: np.ndarray, top_ids: np.ndarray, m: int, offsets: np.ndarray):
    """``m`` ids per row drawn from the distribution outside ``top_ids`` by systematic sampling
    (``offsets``: one uniform in [0, 1) per row; ``m`` evenly spaced points on the tail's CDF):
    each pick is distributed as the tail, with less variance than independent draws."""
    rows, n_vocab = logp.shape
    p = np.exp(logp)
    np.put_along_axis(p, top_ids, 0.0, axis=-1)
    # float32 sums (12x faster than float64 here): a pick's probability is off by ~1e-7 of
    # itself, far below the sample's own noise
    cdf = np.cumsum(p, axis=-1)
    total = cdf[:, -1:]
    cdf /= np.where(total > 0, total, 1.0)
    points = (np.arange(m)[None, :] + offsets[:, None]) / m
    # one searchsorted over all rows: row r's CDF shifted to [r, r + 1]
    base = np.arange(rows)[:, None]
    flat = np.searchsorted((cdf + base).ravel(), (points + base).ravel(), side="right")
    picks = flat.reshape(rows, m) - base * n_vocab
    return np.clip(picks, 0, n_vocab - 1).astype(np.int32)


def kl_divergence_top_k(base: np.ndarray, comp_logp: np.ndarray) -> np.ndarray:
    """Per row, the estimate of KL(P_base || P_comp) in nats from the baseline's bounded rows
    (:func:`top_k_rows`) and the variant's full log-probability rows."""
    comp_logp = np.asarray(comp_logp, dtype=np.float32)
    comp_top = np.take_along_axis(comp_logp, np.asarray(base["ids"]), axis=-1)
    p_tail = np.asarray(base["tail"], dtype=np.float64)
    q_tail = _tail_mass(comp_logp, base["ids"])  # summed as the baseline's was
    base_top = np.asarray(base["logp"], dtype=np.float64)
    kl = (np.exp(base_top) * (base_top - comp_top)).sum(axis=-1)
    kl += p_tail * (np.log(p_tail) - np.log(q_tail))
    tail_ids = np.asarray(base["tail_ids"])
    if tail_ids.shape[-1]:
        lp = np.asarray(base["tail_logp"], dtype=np.float64) - np.log(p_tail)[:, None]
        lq = np.take_along_axis(comp_logp, tail_ids, axis=-1) - np.log(q_tail)[:, None]
        log_r = np.clip(lq - lp, -50.0, 50.0)  # r = q/p inside the tail, both normalised
        inside = (np.expm1(log_r) - log_r).mean(axis=-1)
        kl += np.where(p_tail > TAIL_NEGLIGIBLE, p_tail * inside, 0.0)
    return kl


def top1_agrees(base: np.ndarray, comp_logp: np.ndarray) -> np.ndarray:
    """Per row, whether the variant's argmax is the baseline's."""
    return np.asarray(base["ids"])[:, 0] == np.asarray(comp_logp).argmax(axis=-1)
