"""A backend in a child process of its own, so a native crash costs its pair, not the run.

llama-cpp-python runs llama.cpp in process through ctypes: a SIGSEGV there (llama.cpp's AMX
path on Sapphire Rapids, a bad build, a malformed file) or the kernel's out-of-memory kill
would end the pytest session, with no verdict, no JUnit and no summary. The gate therefore
loads each such model (``Backend.runs_in_child``) in a ``multiprocessing`` child and talks to
it over a ``Pipe``: :class:`ChildBackend` is the Backend the session sees; every call goes to
the child's main thread and its answer (or exception) comes back. When the child dies,
the call raises :class:`BackendCrash`, one line: the artifact, the signal, the backend call and
the frame it died in, llama.cpp's system info line and placement, the CPU, and what to try.
The pool remembers it, so the pair's later tests fail with the same line without loading the
model again; every other pair runs, and the reports are written.

Why a Process and a Pipe, not pytest-xdist's crashed-worker restarts: under xdist
pytest-benchmark records no rounds and a worker's progress lines are not shown, and a crash
restarts a whole worker (collection included) per test of the pair. Why not
``multiprocessing.managers``: its server runs each call on a thread of its own, and the
backends' libraries want their main thread (signal handlers, OpenMP's first team).

Children start from a ``forkserver`` that has imported llama.cpp's backend once: a fork of it
costs milliseconds, where a fresh interpreter costs about a second per load; the server is a
fresh process, so no thread or OpenMP state of the pytest process is forked. ``spawn`` where
forkserver does not exist.

``QUANTGATE_CRASH_IN=<artifact label>:<method>`` makes the child dereference a null pointer
(a real SIGSEGV) when that method is called on that artifact: the project's own tests prove
the path with it (tests/e2e/test_native_crash.py).
"""

from __future__ import annotations

import ctypes
import faulthandler
import multiprocessing
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from quantgate import llama_placement
from quantgate.artifacts.store import Artifact
from quantgate.backends import backend_class
from quantgate.backends.base import Backend, backend_placement
from quantgate.configuration.backend_settings import BackendSettings
from quantgate.errors import EvaluationError
from quantgate.night.machine import cpu_facts

CRASH_ENV = "QUANTGATE_CRASH_IN"
#: modules the forkserver imports once, before it forks any child
_PRELOAD = ["quantgate.backends.llama_cpp"]
#: seconds a child may take to answer ``close`` or to be reaped after it died
_GRACE = 30.0


class BackendCrash(EvaluationError):
    """A backend's child process died (a signal, or an exit it did not choose)."""


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def start_forkserver() -> None:
    """Start the forkserver now: it imports llama.cpp's library (about a second) while this
    process goes on (collection, lm-eval's task index), instead of the first model load
    waiting for it. Nothing where children are spawned instead."""
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()  # returns once the server process is started


def _start_forkserver_unfiltered() -> None:
    # this process is about to refuse AMX (a model loaded in process); a forkserver started
    # after that would pass the refusal on to a child that allows AMX. Not from a child: its
    # own children are not what the gate starts.
    if multiprocessing.parent_process() is None:
        start_forkserver()


llama_placement.before_refusal(_start_forkserver_unfiltered)


class ChildBackend(Backend):
    """The Backend registered as ``backend_name``, loaded in a child process.

    Args:
        backend_name: the registry's backend name
            (quantgate.configuration.backend_settings.CATALOGUE).
        artifact, settings: what to load and how.
        on_crash: called with the BackendCrash when the child dies (the pool remembers it).
    """

    def __init__(
        self,
        backend_name: str,
        artifact: Artifact,
        settings: BackendSettings,
        on_crash: Callable[[BackendCrash], None] | None = None,
    ) -> None:
        self._conn: Connection | None = None
        self._shm: shared_memory.SharedMemory | None = None
        super().__init__(artifact, settings)
        self.name = backend_name
        self._on_crash = on_crash
        self._dead: BackendCrash | None = None
        fd, crash_log = tempfile.mkstemp(prefix=f"quantgate-{artifact.label}-", suffix=".log")
        os.close(fd)
        self.crash_log = Path(crash_log)
        ctx = _context()
        self._conn, child_end = ctx.Pipe()
        self._process = ctx.Process(
            target=serve,
            args=(child_end, backend_name, artifact, settings, str(self.crash_log)),
            name=f"quantgate-{artifact.label}",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        try:
            self._facts: dict[str, Any] = self._call("load", send=False)
        except Exception:
            if self._dead is None:  # a load error the child reported (a crash keeps its log)
                self.close()
            raise
        #: seconds the child took to load the model (not the process start)
        self.load_seconds: float = self._facts["load_seconds"]

    # -- the interface ---------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return int(self._facts["n_vocab"])

    @property
    def bos_token_id(self) -> int | None:
        return self._facts["bos_token_id"]

    @property
    def eos_token_id(self) -> int:
        return int(self._facts["eos_token_id"])

    @property
    def chat_template(self) -> str | None:
        return self._facts.get("chat_template")

    @property
    def placement(self) -> str:
        """Where the child's llama.cpp put the weights (quantgate.llama_placement)."""
        return str(self._facts.get("placement", "default"))

    @property
    def weight_buffers(self) -> dict[str, float]:
        """MiB of weights per buffer type, as the child's llama.cpp reported at load."""
        return dict(self._facts.get("weight_buffers") or {})

    @property
    def tokens_evaluated(self) -> int:
        return int(self._call("getattr", "tokens_evaluated"))

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False):
        return self._call("tokenize", text, add_special, parse_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._call("detokenize", list(tokens))

    def logits(self, tokens: Sequence[int], start: int = 0) -> np.ndarray:
        """The rows come back through shared memory (pickling a chunk's 28 MB through the
        pipe cost 15 % of its scoring time on SmolLM2; this costs one copy, as in process)."""
        shape = (len(tokens) - start, self.n_vocab)
        size = max(1, shape[0] * shape[1] * 4)
        if self._shm is None or self._shm.size < size:
            self._release_shm()
            self._shm = shared_memory.SharedMemory(create=True, size=size)
        self._call("logits", list(tokens), start, self._shm.name)
        return np.ndarray(shape, np.float32, buffer=self._shm.buf).copy()

    def _release_shm(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def score_requests(
        self, requests: Sequence[tuple[Sequence[int], Sequence[int]]]
    ) -> list[tuple[float, bool]]:
        return self._call("score_requests", [(list(c), list(x)) for c, x in requests])

    def generate(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
        stop_text: Sequence[str] = (),
    ) -> list[int]:
        return self._call("generate", list(prompt), max_new_tokens, list(stop_ids), list(stop_text))

    def process_prompt(self, tokens: Sequence[int]) -> None:
        self._call("process_prompt", list(tokens))

    def decode_one_by_one(self, tokens: Sequence[int]) -> None:
        self._call("decode_one_by_one", list(tokens))

    def memory_bytes(self) -> int | None:
        return self._call("memory_bytes")

    def weight_sparsity(self) -> dict[str, float] | None:
        return self._call("weight_sparsity")

    def lm_eval_model(self) -> Any:
        """The backend's lm-eval model, here, scoring through this proxy."""
        return backend_class(self.name).lm_eval_model_of(self)

    # the session sets these after the load; the child's backend reads them
    @property
    def timing_threads(self) -> int | None:  # type: ignore[override]
        return self.__dict__.get("_timing_threads")

    @timing_threads.setter
    def timing_threads(self, value: int | None) -> None:
        self.__dict__["_timing_threads"] = value
        if self._conn is not None:
            self._call("setattr", "timing_threads", value)

    @property
    def shared_cores(self) -> bool:  # type: ignore[override]
        return bool(self.__dict__.get("_shared_cores", False))

    @shared_cores.setter
    def shared_cores(self, value: bool) -> None:
        self.__dict__["_shared_cores"] = value
        if self._conn is not None:
            self._call("setattr", "shared_cores", value)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._dead is None:
            try:
                conn.send(("close", (), {}))
                if conn.poll(_GRACE):
                    conn.recv()
            except (EOFError, OSError):
                pass
            conn.close()
        self._release_shm()
        self._process.join(_GRACE if self._dead is None else 0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        if self._dead is None:  # a crash's log stays: its message names it
            self.crash_log.unlink(missing_ok=True)

    # -- the pipe --------------------------------------------------------------------------------
    def _call(self, method: str, *args: Any, send: bool = True) -> Any:
        """``method(*args)`` in the child; ``send=False``: only its answer (the load's)."""
        if self._dead is not None:
            raise self._dead
        if self._conn is None:
            raise EvaluationError(f"{self.artifact.label}: {self.name} backend used after close")
        try:
            if send:
                self._conn.send((method, args, {}))
            status, value = self._conn.recv()
        except (EOFError, OSError):
            self._dead = self._crash(method)
            if self._on_crash is not None:
                self._on_crash(self._dead)
            raise self._dead from None
        if status == "error":
            raise value
        return value

    def _crash(self, method: str) -> BackendCrash:
        self._process.join(_GRACE)
        code = self._process.exitcode
        log = self.crash_log.read_text(errors="replace") if self.crash_log.is_file() else ""
        return BackendCrash(
            crash_message(
                self.artifact.label,
                self.name,
                method,
                code,
                log,
                self._facts_or_now("placement"),
                str(self.crash_log),
            )
        )

    def _facts_or_now(self, key: str) -> str:
        facts = getattr(self, "_facts", None)
        if facts is not None and key in facts:
            return str(facts[key])
        return backend_placement(self.name, self.settings)  # died while loading


# -- the message ----------------------------------------------------------------------------
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


def signal_name(exitcode: int | None) -> str:
    if exitcode is None:
        return "an unknown end"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def died_in(fault_log: str) -> str:
    """Where faulthandler's dump says the crash was: the innermost Python frame, and the first
    of quantgate's below it (``llama_decode ← quantgate/backends/llama_cpp.py:141 decode``).
    Best effort: a crash in several native threads at once can cut the dump short."""
    frames = [m for line in fault_log.splitlines() if (m := _FRAME.match(line))]
    if not frames:
        return "no Python frame in the fault log"

    def ours(frame: re.Match[str]) -> str:
        return (
            f"quantgate/{frame['file'].split('/quantgate/', 1)[1]}:{frame['line']} {frame['func']}"
        )

    inner = frames[0]
    if "/quantgate/" in inner["file"]:
        return ours(inner)
    below = next((f for f in frames if "/quantgate/" in f["file"]), None)
    return inner["func"] + (f" ← {ours(below)}" if below is not None else "")


def crash_hint(exitcode: int | None, placement: str, backend: str) -> str:
    if exitcode == -signal.SIGKILL:
        return (
            "SIGKILL is what the kernel's out-of-memory killer sends (see dmesg): give the "
            "machine more memory, lower n_ctx or n_batch, or run this pair alone"
        )
    if placement == "amx":
        return (
            "llama.cpp's AMX path is known to segfault here (ggml_backend_amx_mul_mat; "
            "llama.cpp issue 'segfault in ggml_backend_amx_mul_mat'): remove allow_amx from "
            "the entry's backend_settings"
        )
    return (
        f"a crash inside the {backend} library: rerun this pair alone (-k) to see whether it "
        "repeats, and report it with the stack in the fault log"
    )


def crash_message(
    label: str,
    backend: str,
    method: str,
    exitcode: int | None,
    fault_log: str,
    placement: str,
    log_path: str,
) -> str:
    cpu = cpu_facts()
    parts = [
        f"{label}: the {backend} backend's process died of {signal_name(exitcode)} in "
        f"{method}() ({died_in(fault_log)})",
        f"CPU {cpu.model} ({cpu.arch}, {cpu.cores} cores; {' '.join(cpu.kernel_flags)})",
    ]
    if backend == "llama_cpp":
        parts.append(f"llama.cpp: {llama_placement.system_info()}; weights: {placement}")
    parts.append(f"fault log {log_path}")
    parts.append(crash_hint(exitcode, placement, backend))
    return "; ".join(parts)


# -- the child ------------------------------------------------------------------------------
def serve(
    conn: Connection,
    backend_name: str,
    artifact: Artifact,
    settings: BackendSettings,
    crash_log: str,
) -> None:
    """The child's main loop: load, then answer calls until ``close`` or the parent is gone."""
    log = open(crash_log, "w")  # noqa: SIM115 - open for the process's life: faulthandler's
    faulthandler.enable(log, all_threads=True)
    crash_in = os.environ.get(CRASH_ENV, "")
    try:
        cls = backend_class(backend_name)
        placement = cls.prepare_process(settings)
        start = time.perf_counter()
        backend = cls(artifact, settings)
        facts = {
            "load_seconds": time.perf_counter() - start,
            "n_vocab": backend.n_vocab,
            "bos_token_id": backend.bos_token_id,
            "eos_token_id": getattr(backend, "eos_token_id", None),
            "chat_template": getattr(backend, "chat_template", None),
            "placement": placement,
            "weight_buffers": getattr(backend, "weight_buffers", None),
        }
    except Exception as exc:
        conn.send(("error", _picklable(exc)))
        return
    conn.send(("ok", facts))
    shm: shared_memory.SharedMemory | None = None
    while True:
        try:
            method, args, kwargs = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        if crash_in == f"{artifact.label}:{method}":
            ctypes.string_at(0)  # a real SIGSEGV, for the tests of this path
        try:
            if method == "close":
                backend.close()
                conn.send(("ok", None))
                break
            if method == "logits":  # into the parent's shared memory block, by its name
                tokens, start, name = args
                if shm is None or shm.name != name:
                    if shm is not None:
                        shm.close()
                    # the parent owns and unlinks it; both share one resource tracker
                    shm = shared_memory.SharedMemory(name=name)
                out = np.ndarray((len(tokens) - start, backend.n_vocab), np.float32, shm.buf)
                backend.logits(tokens, start, out=out)  # type: ignore[call-arg]
                result = None
            elif method == "getattr":
                result = getattr(backend, args[0])
            elif method == "setattr":
                setattr(backend, args[0], args[1])
                result = None
            else:
                result = getattr(backend, method)(*args, **kwargs)
        except Exception as exc:
            conn.send(("error", _picklable(exc)))
        else:
            conn.send(("ok", result))


def _picklable(exc: Exception) -> Exception:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return EvaluationError(f"{type(exc).__name__}: {exc}")
