"""The shared fixtures (support/fixtures.py) and the child-run mark, for this tier."""

from support.fixtures import (  # noqa: F401 (pytest finds fixtures by name in a conftest)
    gate_run,
    pytest_collection_modifyitems,
    registry_copy,
    s3_endpoint,
    smoke_run,
    smollm2_artifacts,
    store_url,
    thresholds_copy,
    untimed_is_checked,
)
