"""Thin on purpose: everything lives in quantgate.plugin (options, markers, parametrization)."""

pytest_plugins = ["quantgate.plugin"]
