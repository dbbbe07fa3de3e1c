"""The loaded backends of one session, reused across tests."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from quantgate.artifacts.store import Artifact
from quantgate.backends import Backend, backend_class
from quantgate.backends.child import BackendCrash, ChildBackend
from quantgate.configuration.backend_settings import BackendSettings


class BackendPool:
    """At most ``max_loaded`` models loaded at once (the baseline and the variant under test),
    the least recently used closed first; a backend that holds one model per process (vLLM)
    never shares the process with another of its class.

    A backend that ``runs_in_child`` is loaded in a child process of its own
    (quantgate.backends.child) unless ``in_child`` is off; when its child dies, the crash is
    remembered and every later ``get`` of it raises the same BackendCrash.

    Args:
        max_loaded: models kept loaded at once.
        in_child: load such backends in child processes (off: in this process, where a
            native crash ends the session: ``--in-process``, for debuggers).
    """

    def __init__(self, max_loaded: int = 2, in_child: bool = True) -> None:
        self.max_loaded = max_loaded
        self.in_child = in_child
        self._loaded: OrderedDict[str, Backend] = OrderedDict()
        #: seconds each artifact took to load (its first load), for the reports
        self.load_seconds: dict[str, float] = {}
        #: each artifact's peak memory measured as it loaded (Backend.deployed_memory), for
        #: the footprint, kept after the backend is closed
        self.deployed_memory: dict[str, dict[str, float | None]] = {}
        #: the crash of each backend whose child died, by its pool key
        self.crashed: dict[str, BackendCrash] = {}

    def get(
        self,
        artifact: Artifact,
        settings: BackendSettings,
        backend_name: str,
        configure: Callable[[Backend], None] | None = None,
    ) -> Backend:
        """The loaded backend for ``artifact`` with ``settings``, loading it on first use
        (``configure`` then sets what the session decides: its timing threads)."""
        key = f"{artifact.label}:{settings.model_dump_json()}"
        if key in self.crashed:
            raise self.crashed[key]
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        cls = backend_class(backend_name)
        while len(self._loaded) >= self.max_loaded or (
            cls.one_per_process and any(isinstance(b, cls) for b in self._loaded.values())
        ):
            _, old = self._loaded.popitem(last=False)
            old.close()
        start = time.perf_counter()
        if cls.runs_in_child and self.in_child:

            def remember(crash: BackendCrash) -> None:
                self.crashed[key] = crash

            child = ChildBackend(backend_name, artifact, settings, remember)
            self.load_seconds.setdefault(artifact.label, child.load_seconds)
            backend: Backend = child
        else:
            backend = cls(artifact, settings)
            self.load_seconds.setdefault(artifact.label, time.perf_counter() - start)
        if backend.deployed_memory is not None:
            self.deployed_memory.setdefault(artifact.label, backend.deployed_memory)
        if configure is not None:
            configure(backend)
        self._loaded[key] = backend
        return backend

    def close(self) -> None:
        while self._loaded:
            self._loaded.popitem()[1].close()
