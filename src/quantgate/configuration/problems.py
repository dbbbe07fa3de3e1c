"""Gathering configuration problems: a validation pass records each one and goes on, then
raises one ConfigError listing them all, so a user fixes three typos in one round, not three."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from quantgate.errors import ConfigError


class Problems:
    def __init__(self) -> None:
        self.found: list[str] = []
        #: keys that were given but invalid: a later check must not call them missing too
        self.invalid_keys: set[str] = set()

    def add(self, message: str) -> None:
        self.found.append(message)

    @contextlib.contextmanager
    def gather(self) -> Iterator[None]:
        """Record the ConfigError the block raises (each of its problems) and go on."""
        try:
            yield
        except ConfigError as exc:
            self.found.extend(exc.problems)

    def __bool__(self) -> bool:
        return bool(self.found)

    def raise_any(self) -> None:
        if self.found:
            raise ConfigError(*self.found)
