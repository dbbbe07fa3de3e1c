"""Exceptions. Every message is one line naming the file, key or model, and what to do."""

from __future__ import annotations


class QuantgateError(Exception):
    """Bad input or an environment problem: never a pass, never a gate verdict."""


class ConfigError(QuantgateError):
    """A registry or threshold file is invalid."""


class ArtifactError(QuantgateError):
    """A model file is missing, truncated, corrupt or cannot be fetched."""


class DataError(QuantgateError):
    """An evaluation data file is missing or empty."""


class EvaluationError(QuantgateError):
    """An evaluation produced no samples, or NaN/inf where numbers were expected."""


class GateFailure(AssertionError):
    """A measured value breached its threshold. The only exception a canary may xfail on."""
