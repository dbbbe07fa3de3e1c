"""The shared store (quantgate.artifacts.shared_store): a local directory or an S3 API, behind the
local cache. What a night across machines relies on: an entry is never visible half-written, the
first of two writers wins on S3, and a cache with a store fetches what another machine built."""

from __future__ import annotations

import json

import pytest

from quantgate.artifacts.cache import build_once, cache_root, read_result, write_result
from quantgate.artifacts.shared_store import MANIFEST_SUFFIX, STORE_ENV, Store
from quantgate.errors import QuantgateError


def test_a_file_round_trips_and_no_partial_is_ever_listed(store_url, tmp_path):
    store = Store(store_url)
    store.check()
    local = tmp_path / "result.json"
    local.write_text('{"score": 0.41}')
    assert not store.has("results/a.json")
    assert store.fetch("results/a.json", tmp_path / "out.json") is False
    store.publish(local, "results/a.json")
    assert store.has("results/a.json")
    assert store.fetch("results/a.json", tmp_path / "out.json") is True
    assert (tmp_path / "out.json").read_text() == '{"score": 0.41}'
    assert store.listing() == ["results/a.json"]
    assert not list(tmp_path.glob("*.partial-*"))


def test_a_folder_is_visible_only_once_its_manifest_is_written(store_url, tmp_path):
    store = Store(store_url)
    checkpoint = tmp_path / "ckpt"
    (checkpoint / "sub").mkdir(parents=True)
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "sub" / "model.safetensors").write_bytes(b"\0" * 4096)
    (checkpoint / "config.json.sha256").write_text("stamp digest")  # this machine's only
    store.publish(checkpoint, "artifacts/k/ckpt")
    assert store.listing() == ["artifacts/k/ckpt"]
    assert store.fetch("artifacts/k/ckpt", tmp_path / "copy")
    copied = sorted(
        p.relative_to(tmp_path / "copy").as_posix() for p in (tmp_path / "copy").rglob("*")
    )
    assert copied == ["config.json", "sub", "sub/model.safetensors"]
    # a folder whose manifest was never written (its publisher died mid-upload) is not there
    store.fs.rm_file(f"{store.root}/artifacts/k/ckpt{MANIFEST_SUFFIX}")
    assert not store.has("artifacts/k/ckpt")
    assert store.fetch("artifacts/k/ckpt", tmp_path / "again") is False


def test_two_writers_of_one_entry_leave_one_whole_file(store_url, tmp_path):
    store = Store(store_url)
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_bytes(b"A" * 1000)
    second.write_bytes(b"B" * 1000)
    store.publish(first, "results/same.json")
    store.publish(second, "results/same.json")
    store.fetch("results/same.json", tmp_path / "read")
    held = (tmp_path / "read").read_bytes()
    assert held in (b"A" * 1000, b"B" * 1000)
    if store_url.startswith("s3://"):  # a conditional put: the first writer wins
        assert held == b"A" * 1000


def test_a_second_machine_fetches_what_the_first_built(store_url, tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_ENV, store_url)
    builds = []

    def build(partial):
        builds.append(partial)
        partial.write_text("weights")
        (partial.parent / "notes.json").write_text('{"dropped": [3]}')

    for machine in ("one", "two"):
        monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path / machine))
        target = cache_root() / "artifacts" / "k" / "model.gguf"
        build_once(target, build, companions=(target.with_name("notes.json"),))
        assert target.read_text() == "weights"
        assert json.loads(target.with_name("notes.json").read_text()) == {"dropped": [3]}
        result = cache_root() / "results" / "quality" / "k.json"
        if machine == "one":
            assert read_result(result) is None
            write_result(result, {"ppl": 21.5})
        assert read_result(result) == {"ppl": 21.5}
    assert len(builds) == 1  # machine two built nothing


def test_an_unwritable_store_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(QuantgateError, match=r"store .*a-file/store: cannot write a probe file"):
        Store(str(blocker / "store")).check()
    with pytest.raises(QuantgateError, match=r"QUANTGATE_STORE=nosuch://x: .*s3fs"):
        Store("nosuch://x")


def test_a_hub_download_is_made_once_for_every_machine(store_url, tmp_path, monkeypatch):
    """The Hub cannot be reached here: the download itself is replaced by a local file (what
    the test checks is around it: the store's key by commit, and the second machine)."""
    from quantgate.artifacts import sources
    from quantgate.configuration.registry import HubSource

    commit = "a" * 40
    weights = tmp_path / "hub" / "model-00001-of-00002.gguf"
    weights.parent.mkdir()
    weights.write_bytes(b"GGUF" * 100)
    weights.with_name("model-00002-of-00002.gguf").write_bytes(b"GGUF" * 50)
    downloads = []

    def download(spec, ref):
        downloads.append(spec.file)
        return weights.with_name(spec.file)

    monkeypatch.setattr(sources, "_download", download)
    monkeypatch.setenv(STORE_ENV, store_url)
    spec = HubSource(repo="org/model-GGUF", file="model-00001-of-00002.gguf", revision=commit)
    for machine in ("one", "two"):
        monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path / machine))
        path = sources.fetch_hub_file(spec, "models.m.baseline")
        assert path.read_bytes() == b"GGUF" * 100
        assert path.with_name("model-00002-of-00002.gguf").read_bytes() == b"GGUF" * 50
        assert sources.hub_commit(path) == commit  # the provenance reads it from the path
    assert downloads == ["model-00001-of-00002.gguf", "model-00002-of-00002.gguf"]
