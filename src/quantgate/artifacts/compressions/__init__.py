"""Compression methods, one module each: the entry's schema (the keys its ``method`` takes),
the model formats it applies to, its build step and its footprint rule. Every module of this
package is imported here, and each ``Compression`` subclass registers itself by its
``method``: adding a method is one new module (docs/selecting-and-adding.md, "Adding a
compression method")."""

from __future__ import annotations

import importlib
import pkgutil

from quantgate.artifacts.compressions.base import Compression

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def methods_for(format_: str) -> tuple[str, ...]:
    """The methods that apply to a model format, in registration order."""
    return tuple(name for name, cls in Compression.methods.items() if format_ in cls.formats)


__all__ = ["Compression", "methods_for"]
