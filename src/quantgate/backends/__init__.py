"""Backends behind one interface, named in the catalogue and imported lazily.

Adding a backend: subclass :class:`quantgate.backends.base.Backend` in its own module, and give
it a settings class and a catalogue entry in quantgate.configuration.backend_settings
(docs/backends.md, "Adding a backend"); the registry then names it in ``backend:``.
"""

from __future__ import annotations

import importlib

from quantgate.backends.base import Backend
from quantgate.configuration.backend_settings import CATALOGUE
from quantgate.configuration.schema_base import did_you_mean
from quantgate.errors import ConfigError


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name`` (imported on first use: no torch/vLLM at collection)."""
    if name not in CATALOGUE:
        raise ConfigError(
            f"unknown backend {name!r}{did_you_mean(name, CATALOGUE)}; "
            f"known: {', '.join(CATALOGUE)}"
        )
    module_name, attr = CATALOGUE[name].cls.split(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"backend {name!r} -> {CATALOGUE[name].cls} is not a Backend subclass")
    return cls


__all__ = ["Backend", "backend_class"]
