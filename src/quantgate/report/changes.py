"""``--compare``: what changed since an earlier summary.json, value by value and verdict by
verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantgate.errors import ConfigError


@dataclass(frozen=True)
class Change:
    pair: str
    metric: str
    before: float | None
    after: float | None
    verdict_before: str | None
    verdict_after: str | None

    @property
    def verdict_changed(self) -> bool:
        return self.verdict_before != self.verdict_after


def load_previous(path: Path) -> list[dict[str, Any]]:
    """The rows of an earlier summary.json.

    Raises:
        ConfigError: a missing or unreadable file, or one that is not a quantgate summary.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--compare {path}: not found; pass an earlier summary.json") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--compare {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ConfigError(f"--compare {path}: not a quantgate summary.json (no rows list)")
    return doc["rows"]


def compare_rows(
    previous: list[dict[str, Any]], current: list[dict[str, Any]], rel_tol: float = 1e-9
) -> list[Change]:
    """Every (pair, metric) whose value or verdict differs, or that one run lacks."""
    before = {(r["pair"], r["metric"]): r for r in previous}
    after = {(r["pair"], r["metric"]): r for r in current}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        b, a = before.get(key), after.get(key)
        bv, av = (b or {}).get("value"), (a or {}).get("value")
        same_value = (
            bv is not None and av is not None and abs(av - bv) <= rel_tol * max(1.0, abs(bv))
        )
        if b and a and same_value and b.get("verdict") == a.get("verdict"):
            continue
        changes.append(
            Change(key[0], key[1], bv, av, (b or {}).get("verdict"), (a or {}).get("verdict"))
        )
    return changes
