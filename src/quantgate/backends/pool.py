"""The loaded backends of one session, reused across tests."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from quantgate.artifacts import Artifact
from quantgate.backend_settings import BackendSettings
from quantgate.backends import Backend, backend_class


class BackendPool:
    """At most ``max_loaded`` models loaded at once (the baseline and the variant under test),
    the least recently used closed first; a backend that holds one model per process (vLLM)
    never shares the process with another of its class.

    Args:
        max_loaded: models kept loaded at once.
    """

    def __init__(self, max_loaded: int = 2) -> None:
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, Backend] = OrderedDict()
        #: seconds each artifact took to load (its first load), for the reports
        self.load_seconds: dict[str, float] = {}

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
        backend = cls(artifact, settings)
        self.load_seconds.setdefault(artifact.label, time.perf_counter() - start)
        if configure is not None:
            configure(backend)
        self._loaded[key] = backend
        return backend

    def close(self) -> None:
        while self._loaded:
            self._loaded.popitem()[1].close()
