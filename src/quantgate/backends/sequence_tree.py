"""Plans for scoring many (context, continuation) requests in llama.cpp multi-sequence batches.

A request's log-likelihood needs the logits rows that predict each continuation token: rows
``len(context) - 1 .. len(context) + len(continuation) - 2`` of ``context + continuation[:-1]``.
Requests are packed into rounds. Inside a round their input tokens form a prefix tree: each
node is one KV cell at position ``depth``, belonging to the sequence of every request whose path
passes through it, so a context shared by an item's four endings, or a few-shot preamble shared
by every item, is evaluated once. llama.cpp evaluates such a tree in one ``llama_decode`` with a
unified KV cache (its perplexity tool scores HellaSwag this way), and computes the output
projection only for the nodes flagged as outputs.

Between rounds the context keeps, in sequence 0, the prefix common to every request of the last
round (the ``retained`` tokens); the next round reuses as much of it as it shares.

Pure Python and numpy, no llama.cpp: the planning is unit-tested on its own, and the scoring of
logits rows (:func:`score_rows`) is shared with any backend that hands over rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from quantgate.backends.row_threads import row_map

#: rows whose log-softmax one thread computes at once: bounds its float32 temporary to
#: ROW_BLOCK x n_vocab (64 x 262k = 67 MB)
ROW_BLOCK = 64


@dataclass(frozen=True)
class Round:
    """One round: the tokens to decode, in an order where each sequence's tokens rise by one
    position, and which logits row scores which continuation token.

    ``requests[s]`` is the request of sequence ``s``. ``reused`` leading tokens are already in
    the KV cache from the previous round (in sequence 0); the executor copies them to the
    other sequences. ``picks`` has one row per scored token: (output row, target token, index
    into ``requests``), output rows numbered in the order of ``outputs`` flags.
    """

    requests: list[int]
    reused: int
    tokens: list[int]
    positions: list[int]
    seq_ids: list[list[int]]
    outputs: list[bool]
    picks: np.ndarray  # int64 [n_picks, 3]
    retained: list[int]


class _Tree:
    """A prefix tree over token paths; node ``i`` has ``token[i]``, ``depth[i]`` and the
    sequences through it."""

    def __init__(self) -> None:
        self.children: dict[tuple[int, int], int] = {}
        self.token: list[int] = []
        self.depth: list[int] = []
        self.seqs: list[list[int]] = []
        self.kids: list[list[int]] = []
        self.roots: list[int] = []

    def missing(self, path: Sequence[int]) -> int:
        """How many nodes inserting ``path`` would add."""
        parent = -1
        for i, token in enumerate(path):
            node = self.children.get((parent, token))
            if node is None:
                return len(path) - i
            parent = node
        return 0

    def insert(self, path: Sequence[int], seq: int) -> list[int]:
        """Insert ``path`` for sequence ``seq``; returns its node ids."""
        parent, nodes = -1, []
        for depth, token in enumerate(path):
            node = self.children.get((parent, token))
            if node is None:
                node = len(self.token)
                self.children[(parent, token)] = node
                self.token.append(token)
                self.depth.append(depth)
                self.seqs.append([])
                self.kids.append([])
                (self.roots if parent < 0 else self.kids[parent]).append(node)
            self.seqs[node].append(seq)
            nodes.append(node)
            parent = node
        return nodes

    def preorder(self) -> Iterator[int]:
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(self.kids[node]))


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def plan_rounds(
    requests: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    budget: int,
    n_seq_max: int,
    n_ctx: int,
    retained: Sequence[int] = (),
) -> Iterator[Round]:
    """Rounds covering ``requests`` in order, each adding at most ``budget`` new KV cells
    (one decode of ``budget`` tokens) and ``n_seq_max`` sequences. A request longer than
    ``budget`` gets a round of its own, decoded in several calls.

    Raises:
        ValueError: an empty context or continuation, or a request over ``n_ctx`` tokens.
    """
    for ctx, cont in requests:
        if not ctx:
            raise ValueError("an empty context has nothing to condition on: prepend BOS/EOS")
        if not cont:
            raise ValueError("an empty continuation has no log-likelihood")
        if len(ctx) + len(cont) - 1 > n_ctx:
            raise ValueError(f"{len(ctx) + len(cont) - 1} tokens do not fit n_ctx={n_ctx}")
    retained = list(retained)
    start = 0
    while start < len(requests):
        tree, members, walks = _Tree(), [], []
        root: list[int] | None = None  # the prefix every member shares (capped: see below)
        present = 0
        for r in range(start, len(requests)):
            ctx, cont = requests[r]
            path = [*ctx, *cont[:-1]]
            # the last context token's row is an output: it is never reused from a past round
            cap = path[: len(ctx) - 1]
            new_root = cap if root is None else root[: _common(root, cap)]
            new_present = _common(retained, new_root)
            added = len(tree.token) + tree.missing(path) - new_present
            if members and (added > min(budget, n_ctx - new_present) or len(members) >= n_seq_max):
                break
            root, present = new_root, new_present
            walks.append(tree.insert(path, len(members)))
            members.append(r)
        yield _emit(tree, members, walks, requests, present, root or [])
        retained = root or []
        start += len(members)


def _emit(
    tree: _Tree,
    members: list[int],
    walks: list[list[int]],
    requests: Sequence[tuple[Sequence[int], Sequence[int]]],
    present: int,
    root: list[int],
) -> Round:
    # which node's row scores which continuation token
    wanted: dict[int, list[tuple[int, int]]] = {}
    for seq, r in enumerate(members):
        ctx, cont = requests[r]
        for j, target in enumerate(cont):
            node = walks[seq][len(ctx) - 1 + j]
            wanted.setdefault(node, []).append((int(target), seq))
    tokens, positions, seq_ids, outputs, picks = [], [], [], [], []
    row = 0
    for node in tree.preorder():
        if tree.depth[node] < present:
            continue  # in the KV cache from the last round
        tokens.append(tree.token[node])
        positions.append(tree.depth[node])
        seq_ids.append(tree.seqs[node])
        scored = wanted.get(node)
        outputs.append(scored is not None)
        if scored:
            picks.extend((row, target, seq) for target, seq in scored)
            row += 1
    return Round(
        requests=members,
        reused=present,
        tokens=tokens,
        positions=positions,
        seq_ids=seq_ids,
        outputs=outputs,
        picks=np.asarray(picks, dtype=np.int64).reshape(-1, 3),
        retained=root,
    )


def score_rows(
    logits: np.ndarray, picks: np.ndarray, n_seqs: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Sum of log-probs per sequence and whether every pick is the row's argmax, from raw
    logits rows ``[n_rows, n_vocab]`` and picks (row, target, seq).

    Vectorised log-softmax as :func:`quantgate.evaluation.perplexity.log_softmax` computes it
    (float32 exponentials, a float64 sum), only at the picked entries. The third value is False when
    a picked row has NaN/inf logits.
    """
    rows = np.asarray(logits)
    lse = np.empty(len(rows), dtype=np.float64)
    top = np.empty(len(rows), dtype=np.int64)

    def blocks(first: int, last: int) -> None:
        for lo in range(first, last, ROW_BLOCK):
            hi = min(lo + ROW_BLOCK, last)
            block = np.asarray(rows[lo:hi], dtype=np.float32)
            peak = block.max(axis=1, keepdims=True)
            top[lo:hi] = block.argmax(axis=1)
            total = np.exp(block - peak).sum(axis=1, dtype=np.float64)
            lse[lo:hi] = np.log(total) + peak[:, 0]

    row_map(blocks, len(rows))
    row, target, seq = picks[:, 0], picks[:, 1], picks[:, 2]
    picked = rows[row, target].astype(np.float64) - lse[row]
    finite = bool(np.isfinite(picked).all())
    sums = np.bincount(seq, weights=picked, minlength=n_seqs)
    misses = np.bincount(seq, weights=(top[row] != target), minlength=n_seqs)
    return sums, misses == 0, finite
