"""Fixtures of the project's own tests, for every tier (each tier's conftest.py imports them;
the helpers they wrap live in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from support.helpers import REPO, UNTIMED, GateRun, run_gate


@pytest.fixture
def gate_run(tmp_path):
    def run(*args: str, **kw) -> GateRun:
        return run_gate(*args, reports=tmp_path / "reports", **kw)

    return run


@pytest.fixture(autouse=True)
def untimed_is_checked(request, monkeypatch):
    """A test marked ``untimed`` (make test runs it beside other work, at idle priority) fails
    if a child gate run of its times anything (support/helpers.py: run_gate)."""
    if request.node.get_closest_marker("untimed"):
        monkeypatch.setenv(UNTIMED, "1")


@pytest.fixture
def registry_copy(tmp_path):
    """Write a registry derived from fixtures/models.yaml; returns its path.

    ``edit(doc)`` changes the parsed YAML; relative paths keep pointing into fixtures/.
    """

    def make(edit) -> Path:
        from benchmarks.registry_copy import with_absolute_paths

        fixtures = REPO / "fixtures"
        doc = with_absolute_paths(yaml.safe_load((fixtures / "models.yaml").read_text()), fixtures)
        edit(doc)
        path = tmp_path / "models.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return make


@pytest.fixture
def thresholds_copy(tmp_path):
    """A copy of thresholds/, with optional extra files {name: yaml text}."""

    def make(
        files: dict[str, str] | None = None,
        drop: tuple[str, ...] = (),
        defaults: dict[str, dict[str, object]] | None = None,
    ) -> Path:
        """``files``: whole files to write; ``defaults``: {file: {key: bound}} merged into a
        shipped file's ``defaults:`` (a benchmark a test adds needs its D_ bound)."""
        out = tmp_path / "thresholds"
        out.mkdir(exist_ok=True)
        for f in (REPO / "thresholds").glob("*.yaml"):
            if f.name not in drop:
                (out / f.name).write_text(f.read_text())
        for name, text in (files or {}).items():
            (out / name).write_text(text)
        for name, bounds in (defaults or {}).items():
            doc = yaml.safe_load((out / name).read_text()) or {}
            doc["defaults"] = {**(doc.get("defaults") or {}), **bounds}
            (out / name).write_text(yaml.safe_dump(doc, sort_keys=False))
        return out

    return make


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> GateRun:
    """``pytest -m smoke``, the README's main command on the embedded default, once a session:
    the golden comparison, the reports' tests and Q8_0's every-gate proof read the same run."""
    run = run_gate("-m", "smoke", reports=tmp_path_factory.mktemp("smoke") / "reports")
    assert run.returncode == 0, run.output[-3000:]
    return run


@pytest.fixture(scope="session")
def smollm2_artifacts():
    """The real embedded default: its baseline and one variant, built (or read) from the cache."""
    from quantgate.artifacts.store import ArtifactStore
    from quantgate.configuration.registry import load_registry

    registry = load_registry(REPO / "fixtures" / "models.yaml")
    store = ArtifactStore(registry)
    pairs = {p.compression_name: p for p in registry.pairs(["smollm2"])}
    return store.baseline("smollm2"), store.variant(pairs["Q2_K"])


@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3 API on 127.0.0.1 (moto's standalone server, in this process) with a bucket
    ``night``; yields the environment a child process needs to reach it."""
    import logging

    boto3 = pytest.importorskip("boto3")
    server = pytest.importorskip("moto.server").ThreadedMotoServer(
        ip_address="127.0.0.1", port=0, verbose=False
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], **_keys(env))
    client.create_bucket(Bucket="night")
    yield env
    server.stop()


def _keys(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(params=["directory", "s3"])
def store_url(request, tmp_path, monkeypatch):
    """A fresh shared store, a local directory or an S3 prefix; this process (and a child
    started from it) reaches it through the environment."""
    if request.param == "directory":
        return str(tmp_path / "store")
    for key, value in request.getfixturevalue("s3_endpoint").items():
        monkeypatch.setenv(key, value)
    return f"s3://night/{tmp_path.name}"  # unique in the session, as tmp_path is


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that runs the gate in a child pytest is marked ``child_pytest`` (seconds each: a
    pytest start, and often the model), so ``-m`` can pick them across the tiers' folders."""
    for item in items:
        if "gate_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.child_pytest)
