"""Shared pydantic base: unknown keys are errors that list the valid ones and suggest a fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = {f.alias or name for name, f in cls.model_fields.items()}
            for key in data:
                if key not in allowed:
                    raise ValueError(
                        f"unknown key {key!r}{did_you_mean(str(key), allowed)}; "
                        f"valid keys: {', '.join(sorted(allowed))}"
                    )
        return data


def one_line(exc: ValidationError, where: str) -> str:
    """The first validation error as ``where: a.b.c: message`` on one line."""
    return every_line(exc, where)[0]


def every_line(exc: ValidationError, where: str, prefix: str = "") -> list[str]:
    """Every validation error, each as ``where: prefix.a.b.c: message`` on one line."""
    out = []
    for err in exc.errors():
        loc = ".".join([prefix] * bool(prefix) + [str(p) for p in err["loc"]])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required key is missing"
        out.append(f"{where}: {loc}: {msg}" if loc else f"{where}: {msg}")
    return out
