"""Exceptions. Every message is one line naming the file, key or model, and what to do."""

from __future__ import annotations


class QuantgateError(Exception):
    """Bad input or an environment problem: never a pass, never a gate verdict."""


class ConfigError(QuantgateError):
    """A registry or threshold file is invalid. A validation pass that gathered several
    problems raises one ConfigError listing them all (``problems``), one line each."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(dict.fromkeys(problems))  # the same problem found twice: once
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            lines = "\n".join(f"  {i}. {p}" for i, p in enumerate(self.problems, 1))
            super().__init__(f"{len(self.problems)} configuration problems:\n{lines}")


class ArtifactError(QuantgateError):
    """A model file is missing, truncated, corrupt or cannot be fetched."""


class ToolError(QuantgateError):
    """A llama.cpp command-line tool (llama-imatrix, llama-quantize) could not be built or
    failed."""


class DataError(QuantgateError):
    """An evaluation data file is missing or empty."""


class EvaluationError(QuantgateError):
    """An evaluation produced no samples, or NaN/inf where numbers were expected."""


class GateFailure(AssertionError):
    """A measured value breached its threshold. The only exception a canary may xfail on."""
