"""What the project's own tests share: helpers (helpers.py, damage.py), fixtures (fixtures.py,
imported by each tier's conftest.py) and the child runs' probe plugin (modules_probe.py)."""
