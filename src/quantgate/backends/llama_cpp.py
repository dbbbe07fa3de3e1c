"""llama-cpp-python, in process: GGUF files on CPU (and GPU offload where built for it)."""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp import Llama, _internals, _logger

from quantgate import llama_placement
from quantgate.artifacts.store import Artifact
from quantgate.backends.base import Backend
from quantgate.backends.llama_cpp_lm import LlamaCppBackendLM, ScoringBackend
from quantgate.backends.sequence_tree import Round, plan_rounds, score_rows
from quantgate.configuration.backend_settings import BackendSettings, LlamaCppSettings
from quantgate.errors import ArtifactError, EvaluationError
from quantgate.night.machine import available_cores

#: llama.cpp's load log line for each buffer the weights went to ("CPU_REPACK model buffer
#: size = 7.59 MiB"): the placement it chose, as it reports it
_BUFFER_LINE = re.compile(r"(\S+) model buffer size =\s*([\d.]+) MiB")
_buffer_lines: list[str] | None = None


@llama_cpp.llama_log_callback
def _log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama-cpp-python's own logger, which also hands the buffer lines of a load in progress
    to ``_buffer_lines``."""
    if _buffer_lines is not None and b"model buffer size" in text:
        _buffer_lines.append(text.decode("utf-8", "replace"))
    _logger.llama_log_callback(level, text, user_data)


@contextmanager
def _reported_buffers() -> Iterator[dict[str, float]]:
    """Inside: a load; after: MiB of weights per buffer type, as llama.cpp's log said."""
    global _buffer_lines
    buffers: dict[str, float] = {}
    _buffer_lines = []
    llama_cpp.llama_log_set(_log, ctypes.c_void_p(0))
    try:
        yield buffers
    finally:
        for line in _buffer_lines:
            if m := _BUFFER_LINE.search(line):
                buffers[m.group(1)] = buffers.get(m.group(1), 0.0) + float(m.group(2))
        _buffer_lines = None


def _load_llama(
    artifact: Artifact, settings: LlamaCppSettings, buffers: dict[str, float] | None = None
) -> Llama:
    """A model and its own context, which keeps the last logits row only; ``buffers`` gets
    the MiB of weights llama.cpp put in each buffer type."""
    placement = llama_placement.apply(settings.allow_amx)
    kv_type = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}[
        settings.kv_cache_type
    ]
    threads = settings.n_threads or available_cores()
    try:
        with llama_placement.model_params(placement), _reported_buffers() as reported:
            llm = Llama(
                model_path=str(artifact.path),
                n_ctx=settings.n_ctx,
                n_batch=settings.n_batch,
                n_ubatch=settings.n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                seed=settings.seed,
                type_k=kv_type,
                type_v=kv_type,
                n_gpu_layers=settings.n_gpu_layers,
                verbose=False,
            )
    except ValueError as exc:  # llama-cpp-python: "Failed to load model from file: ..."
        raise ArtifactError(
            f"{artifact.label}: llama.cpp could not load {artifact.path}: {exc}"
        ) from None
    if buffers is not None:
        buffers.update(reported)
    return llm


class _TreeContext:
    """A second llama.cpp context on the same model for scoring: a unified KV cache shared by
    up to ``n_seq_max`` sequences, one ``llama_batch`` whose tokens may belong to several
    sequences, and logits only for the rows flagged as outputs (llama-cpp-python's ``eval``
    computes and copies every row). Runs the rounds of :mod:`quantgate.backends.sequence_tree`.
    """

    def __init__(self, llm, n_seq_max: int) -> None:  # llm: llama_cpp.Llama

        params = type(llm.context_params).from_buffer_copy(llm.context_params)
        params.n_seq_max = n_seq_max
        params.kv_unified = True  # cells shared by sequences: one KV cache, not n_seq_max
        # With an F16 KV cache, llama.cpp's default (llama-perplexity's too): flash attention
        # where the device has it. Its kernel skips masked cells, so a token attends to its
        # own sequence, not every cell of the round (a 40-item HellaSwag run: 8.4 s -> 6.9 s).
        # It rounds to F16 as it goes: with an F32 cache, asked for precision, it stays off
        # (measured on F32 weights: 0.013 nats from transformers with it, 1.6e-5 without).
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
            if params.type_k == llama_cpp.GGML_TYPE_F16
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        self._lib = llama_cpp
        self._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.n_batch = int(params.n_batch)
        self.n_seq_max = n_seq_max
        self.n_vocab = int(llm.n_vocab())
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, n_seq_max)
        self._memory = self._ctx.memory
        #: tokens held in sequence 0 after the last round (the next round may reuse them)
        self.retained: list[int] = []

    def set_threads(self, n: int) -> None:
        self._lib.llama_set_n_threads(self._ctx.ctx, n, n)

    def clear(self) -> None:
        self._lib.llama_memory_clear(self._memory, True)
        self.retained = []

    def decode(self, tokens, positions, seq_ids, outputs) -> np.ndarray:
        """One llama_decode of at most n_batch tokens; the flagged rows' logits, a view into
        llama.cpp's buffer valid until the next decode."""
        batch, n = self._batch, len(tokens)
        for i in range(n):
            batch.token[i] = tokens[i]
            batch.pos[i] = positions[i]
            ids = seq_ids[i]
            batch.n_seq_id[i] = len(ids)
            row = batch.seq_id[i]
            for j, seq in enumerate(ids):
                row[j] = seq
            batch.logits[i] = outputs[i]
        batch.n_tokens = n
        status = self._lib.llama_decode(self._ctx.ctx, batch)
        if status != 0:
            raise EvaluationError(f"llama_decode failed ({status}) on a batch of {n} tokens")
        n_out = sum(outputs)
        if not n_out:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        ptr = self._lib.llama_get_logits(self._ctx.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_out, self.n_vocab))

    def run(self, rd: Round) -> tuple[np.ndarray, np.ndarray, bool]:
        """Decode one round; per sequence the summed log-prob, whether greedy, and whether
        every scored row was finite."""
        lib, mem = self._lib, self._memory
        if rd.reused == 0:
            self.clear()
        else:
            lib.llama_memory_seq_rm(mem, 0, rd.reused, -1)
            for seq in range(1, len(rd.requests)):
                lib.llama_memory_seq_cp(mem, 0, seq, 0, rd.reused)
        n_seqs = len(rd.requests)
        sums = np.zeros(n_seqs, dtype=np.float64)
        greedy = np.ones(n_seqs, dtype=bool)
        finite = True
        row0 = 0
        for lo in range(0, len(rd.tokens), self.n_batch):
            hi = lo + self.n_batch
            flags = rd.outputs[lo:hi]
            rows = self.decode(rd.tokens[lo:hi], rd.positions[lo:hi], rd.seq_ids[lo:hi], flags)
            n_rows = len(rows)
            mine = rd.picks[(rd.picks[:, 0] >= row0) & (rd.picks[:, 0] < row0 + n_rows)]
            if len(mine):
                local = mine.copy()
                local[:, 0] -= row0
                part, part_greedy, ok = score_rows(rows, local, n_seqs)
                sums += part
                greedy &= part_greedy
                finite &= ok
            row0 += n_rows
        # keep the prefix every sequence shared, in sequence 0, for the next round
        lib.llama_memory_seq_keep(mem, 0)
        lib.llama_memory_seq_rm(mem, 0, len(rd.retained), -1)
        self.retained = rd.retained
        return sums, greedy, finite

    def logits(
        self, tokens: Sequence[int], start: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Rows ``start..`` of one sequence from an empty cache, float32, copied (into
        ``out`` when given)."""
        self.clear()
        if out is None:
            out = np.empty((len(tokens) - start, self.n_vocab), dtype=np.float32)
        tokens = list(tokens)
        done = 0
        for lo in range(0, len(tokens), self.n_batch):
            chunk = tokens[lo : lo + self.n_batch]
            positions = list(range(lo, lo + len(chunk)))
            rows = self.decode(
                chunk, positions, [[0]] * len(chunk), [p >= start for p in positions]
            )
            out[done : done + len(rows)] = rows
            done += len(rows)
        return out

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        self._ctx.close()


class LlamaCppBackend(ScoringBackend):
    """One llama-cpp-python model with two contexts.

    ``_llama``'s own context keeps only the last logits row, like llama-bench and llama-cli:
    generation and timing use it, so throughput is not charged for an output projection over
    every prompt token. ``_tree`` scores: many sequences per decode, logits only where a
    request scores a token (perplexity's second halves, continuation tokens).
    """

    name = "llama_cpp"
    #: llama.cpp runs in process through ctypes: a segfault in it would end the pytest session
    runs_in_child = True
    #: sequences per scoring round: an item's endings times the items one decode holds
    n_seq_max = 64
    settings: LlamaCppSettings

    def __init__(self, artifact: Artifact, settings: BackendSettings) -> None:
        assert isinstance(settings, LlamaCppSettings)
        super().__init__(artifact, settings)
        #: MiB of weights in each of llama.cpp's buffer types (CPU_Mapped, CPU_REPACK, AMX...)
        self.weight_buffers: dict[str, float] = {}
        self._llama = _load_llama(artifact, settings, self.weight_buffers)
        # llama.cpp reserves an output row per sequence within the batch (n_outputs_max)
        sequences = min(self.n_seq_max, settings.n_batch, llama_cpp.llama_max_parallel_sequences())
        self._tree = _TreeContext(self._llama, sequences)
        #: tokens run through the model by score_requests (the scoring benchmark reads it)
        self.tokens_evaluated = 0

    @classmethod
    def prepare_process(cls, settings: BackendSettings) -> str:
        assert isinstance(settings, LlamaCppSettings)
        return llama_placement.apply(settings.allow_amx)

    @classmethod
    def run_as_deployed(cls, artifact: Artifact, settings: BackendSettings, prompt: str) -> None:
        # one context that keeps the last logits row only, as a deployment would (the gate's
        # backend adds a scoring context)
        assert isinstance(settings, LlamaCppSettings)
        llm = _load_llama(artifact, settings)
        llm.eval(llm.tokenize(prompt.encode())[:32])

    @property
    def placement(self) -> str:
        """Where this process's llama.cpp put the weights (quantgate.llama_placement)."""
        return llama_placement.applied() or llama_placement.DEFAULT

    @property
    def n_vocab(self) -> int:
        return int(self._llama.n_vocab())

    @property
    def bos_token_id(self) -> int | None:
        vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        return int(self._llama.token_bos()) if llama_cpp.llama_vocab_get_add_bos(vocab) else None

    @property
    def eos_token_id(self) -> int:
        return int(self._llama.token_eos())

    @property
    def chat_template(self) -> str | None:
        """The GGUF's tokenizer.chat_template (None when the file has none)."""
        return self._llama.metadata.get("tokenizer.chat_template") or None

    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        """``parse_special``: markers such as <|im_start|> in the text are single tokens (as
        HF tokenizers read a rendered chat template)."""
        return list(
            self._llama.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
        )

    def _check_fits(self, n: int) -> None:
        if n > self.settings.n_ctx:
            raise ValueError(f"{n} tokens do not fit n_ctx={self.settings.n_ctx}")

    def _scoring_context(self) -> _TreeContext:
        """The scoring context; under xdist at the cores the computing workers share now."""
        tree = self._tree
        threads = self.settings.n_threads or available_cores()
        if self.shared_cores:
            from quantgate.quiet import evaluation_threads

            threads = evaluation_threads()
        if threads != getattr(self, "_eval_threads", None):
            tree.set_threads(threads)
            self._eval_threads = threads
        return tree

    def logits(
        self, tokens: Sequence[int], start: int = 0, out: np.ndarray | None = None
    ) -> np.ndarray:
        """``out``: a float32 [len(tokens) - start, n_vocab] array to write the rows into (a
        child process writes them into the parent's shared memory: quantgate.backends.child)."""
        self._check_fits(len(tokens))
        return self._scoring_context().logits(tokens, start, out)

    def score_requests(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[tuple[float, bool]]:
        """Per (context, continuation): the sum of the continuation's log-probs and whether it
        is the greedy continuation. Requests go through rounds of one decode each
        (:mod:`quantgate.backends.sequence_tree`): shared contexts and preambles are evaluated
        once, and only the rows that score a token get logits.

        Raises:
            EvaluationError: NaN/inf logits.
        """
        tree = self._scoring_context()
        results: list[tuple[float, bool]] = []
        for rd in plan_rounds(
            requests,
            budget=tree.n_batch,
            n_seq_max=tree.n_seq_max,
            n_ctx=self.settings.n_ctx,
            retained=tree.retained,
        ):
            sums, greedy, finite = tree.run(rd)
            if not finite:
                raise EvaluationError(f"{self.artifact.label}: NaN/inf logits while scoring")
            self.tokens_evaluated += len(rd.tokens)
            results.extend(zip(sums.tolist(), greedy.tolist(), strict=True))
        return results

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._llama.detokenize(list(tokens), special=False).decode("utf-8", "replace")

    def generate(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
        stop_text: Sequence[str] = (),
    ) -> list[int]:
        self._check_fits(len(prompt) + max_new_tokens)
        llm = self._llama
        threads = self.settings.n_threads or available_cores()
        llama_cpp.llama_set_n_threads(llm._ctx.ctx, threads, threads)
        self._prefill(llm, list(prompt))
        out: list[int] = []
        eos = {int(llm.token_eos()), *stop_ids}
        stops = [s for s in stop_text if s]
        for _ in range(max_new_tokens):
            # greedy: argmax of the last row (temperature 0, top_k 1). The serving context keeps
            # no scores (llama-cpp-python only copies logits when logits_all is on): read
            # llama.cpp's buffer for the last token directly.
            token = int(np.argmax(self._last_logits(llm)))
            if token in eos:
                break
            out.append(token)
            if stops and any(s in self.detokenize(out) for s in stops):
                break
            llm.eval([token])
        return out

    def _prefill(self, llm: Llama, prompt: list[int]) -> None:
        """Evaluate ``prompt`` after the longest prefix it shares with what the context holds:
        a few-shot task's prompts share their worked examples (GSM8K's five: about 1,000 of
        1,100 tokens), which were prefilled anew for every item and cost 80 % of its time.
        ``Llama.eval`` drops the cache past ``n_tokens`` before it evaluates; llama.cpp's
        logits do not depend on how the prompt is split into batches (measured: the same
        greedy tokens on GSM8K's items, as a quarter of the batch size is bit-identical)."""
        held = llm.input_ids[: llm.n_tokens].tolist()
        shared = 0
        # at least the prompt's last token is evaluated: its logits choose the first token
        for a, b in zip(held, prompt[:-1], strict=False):
            if a != b:
                break
            shared += 1
        llm.n_tokens = shared
        llm.eval(prompt[shared:])

    def _last_logits(self, llm) -> np.ndarray:
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _timed_context(self):  # -> llama_cpp.Llama
        """The serving context at the timing thread count (llama_set_n_threads, per call:
        generate may have set it back)."""
        llm = self._llama
        n = self.timing_threads or self.settings.n_threads or available_cores()
        llama_cpp.llama_set_n_threads(llm._ctx.ctx, n, n)
        return llm

    def process_prompt(self, tokens: Sequence[int]) -> None:
        self._check_fits(len(tokens))
        llm = self._timed_context()
        llm.reset()
        llm.eval(list(tokens))

    def decode_one_by_one(self, tokens: Sequence[int]) -> None:
        self._check_fits(len(tokens))
        llm = self._timed_context()
        llm.reset()
        for token in tokens:
            llm.eval([token])

    @classmethod
    def lm_eval_model_of(cls, backend: Backend) -> Any:
        return LlamaCppBackendLM(backend)  # type: ignore[arg-type]  (this class, or its child proxy)

    def close(self) -> None:
        tree = self.__dict__.pop("_tree", None)
        if tree is not None:
            tree.close()
        llm = self.__dict__.pop("_llama", None)
        if llm is not None:
            llm.close()
