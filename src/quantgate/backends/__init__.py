"""Backends behind one interface, registered by name and imported lazily.

Adding a backend: subclass :class:`quantgate.backends.base.Backend` in its own module and add a
``"name": "module:Class"`` line below; the registry names it in ``backend:``.
"""

from __future__ import annotations

import importlib

from quantgate.backends.base import Backend
from quantgate.errors import ConfigError
from quantgate.schema_base import did_you_mean

BACKENDS: dict[str, str] = {
    "llama_cpp": "quantgate.backends.llama_cpp:LlamaCppBackend",
    "transformers": "quantgate.backends.transformers:TransformersBackend",
    "vllm": "quantgate.backends.vllm:VllmBackend",
}


#: the backends whose class ``runs_in_child``, known without importing them (llama.cpp's
#: library, torch): the plugin starts their forkserver at collection. A unit test holds this
#: to the classes.
RUN_IN_CHILD = frozenset({"llama_cpp"})


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name`` (imported on first use: no torch/vLLM at collection)."""
    if name not in BACKENDS:
        raise ConfigError(
            f"unknown backend {name!r}{did_you_mean(name, BACKENDS)}; known: {', '.join(BACKENDS)}"
        )
    module_name, attr = BACKENDS[name].split(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"backend {name!r} -> {BACKENDS[name]} is not a Backend subclass")
    return cls


__all__ = ["BACKENDS", "RUN_IN_CHILD", "Backend", "backend_class"]
