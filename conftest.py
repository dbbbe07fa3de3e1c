"""Thin on purpose. quantgate's plugin (options, markers, parametrization from the registry,
the session fixture) is registered through the ``pytest11`` entry point in pyproject.toml, so
it loads in any project that installs quantgate. Project-specific fixtures would go here."""
