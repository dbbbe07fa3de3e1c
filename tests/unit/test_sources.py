"""Artifact sources: local paths, checksums, and the Hub (up to the download call; offline here)."""

from __future__ import annotations

import pytest

from quantgate.artifacts import sources
from quantgate.configuration.registry import HubSource, Source, load_registry
from quantgate.errors import ArtifactError
from support.helpers import REPO

SPEC = HubSource(
    repo="bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
    file="Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
    revision="0123abc",
)


@pytest.fixture
def registry():
    return load_registry(REPO / "fixtures" / "models.yaml")


def test_local_path_missing_names_entry_and_registry(registry, tmp_path):
    with pytest.raises(
        ArtifactError,
        match=r"models\.x\.baseline: file not found: .*nope\.gguf "
        r"\(from source\.path in .*models\.yaml\)",
    ):
        sources.fetch(Source(path=str(tmp_path / "nope.gguf")), registry.path, "models.x.baseline")


def test_local_path_sha256_mismatch(registry, tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    with pytest.raises(ArtifactError, match=r"sha256 mismatch .* expected 0{64}, got "):
        sources.fetch(Source(path=str(f), sha256="0" * 64), registry.path, "models.x")


#: Study A's imatrix calibration text, as the nightly entries name it: a dataset repo's file
WIKITEXT_ZIP = HubSource(
    repo="ggml-org/ci", repo_type="dataset", file="wikitext-2-raw-v1.zip", revision="main"
)


@pytest.mark.parametrize("spec", [SPEC, WIKITEXT_ZIP], ids=["model", "dataset"])
def test_hub_download_is_called_with_the_pinned_revision(monkeypatch, tmp_path, spec):
    monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path))
    calls = []
    import huggingface_hub

    def fake_download(**kwargs):
        calls.append(kwargs)
        return str(tmp_path / kwargs["filename"])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert sources.fetch_hub_file(spec, "models.llama31").name == spec.file
    assert calls == [
        {
            "repo_id": spec.repo,
            "filename": spec.file,
            "revision": spec.revision,
            "repo_type": spec.repo_type,
            "cache_dir": str(tmp_path / "hf"),
        }
    ]
    kind = "datasets/" if spec.repo_type == "dataset" else ""
    assert sources.hub_ref(spec) == f"hf://{kind}{spec.repo}/{spec.file}@{spec.revision}"


def test_a_member_of_an_archive_is_extracted_once_after_its_checksum(
    registry, tmp_path, monkeypatch
):
    import hashlib
    import zipfile

    monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path / "cache"))
    text = (REPO / "fixtures" / "data" / "calibration" / "wiki.test.calib.raw").read_bytes()
    archive = tmp_path / "wikitext-2-raw-v1.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("wikitext-2-raw/wiki.train.raw", text)
        zf.writestr("wikitext-2-raw/wiki.valid.raw", b"other")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    source = Source(path=str(archive), sha256=sha, member="wikitext-2-raw/wiki.train.raw")
    path = sources.fetch(source, registry.path, "imatrix.calibration")
    assert path.name == "wiki.train.raw" and path.read_bytes() == text
    assert sources.fetch(source, registry.path, "imatrix.calibration") == path  # reused
    # the archive is checked before anything is taken out of it
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        sources.fetch(source.model_copy(update={"sha256": "0" * 64}), registry.path, "imatrix")
    with pytest.raises(
        ArtifactError,
        match=r"imatrix: wikitext-2-raw-v1\.zip has no member 'wikitext-2-raw/wiki\.tran\.raw'"
        r".*did you mean 'wikitext-2-raw/wiki\.train\.raw'",
    ):
        sources.fetch(
            source.model_copy(update={"member": "wikitext-2-raw/wiki.tran.raw"}),
            registry.path,
            "imatrix",
        )
    plain = tmp_path / "plain.txt"
    plain.write_text("not an archive")
    with pytest.raises(ArtifactError, match="is not a zip file"):
        sources.fetch(Source(path=str(plain), member="x"), registry.path, "imatrix")


QWEN = "Qwen/Qwen2.5-7B-Instruct-GGUF"
QWEN_SHARDS = [f"qwen2.5-7b-instruct-fp16-{i:05d}-of-00004.gguf" for i in range(1, 5)]
SHA = "a" * 40


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """huggingface_hub's download calls, answering from a Hub cache layout under tmp_path."""
    monkeypatch.setenv("QUANTGATE_CACHE", str(tmp_path))
    import huggingface_hub

    calls: list[tuple[str, dict]] = []
    snapshot = tmp_path / "hf" / "models--x" / "snapshots" / SHA

    def hf_hub_download(**kw):
        calls.append(("file", kw))
        return str(snapshot / kw["filename"])

    def snapshot_download(**kw):
        calls.append(("snapshot", kw))
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / "model.safetensors").write_bytes(b"")
        return str(snapshot)

    def list_repo_files(repo, revision=None, repo_type=None):
        calls.append(("list", {"repo": repo, "revision": revision, "repo_type": repo_type}))
        return [*QWEN_SHARDS, "qwen2.5-7b-instruct-q4_k_m.gguf", "README.md"]

    for f in (hf_hub_download, snapshot_download, list_repo_files):
        monkeypatch.setattr(huggingface_hub, f.__name__, f)
    return calls


@pytest.mark.parametrize("named", [QWEN_SHARDS[2], "qwen2.5-7b-instruct-fp16-*.gguf"])
def test_a_split_gguf_fetches_every_shard_and_returns_the_first(fake_hub, named):
    path = sources.fetch_hub_file(HubSource(repo=QWEN, file=named, revision="main"), "m")
    assert path.name == QWEN_SHARDS[0]
    assert [kw["filename"] for kind, kw in fake_hub if kind == "file"] == QWEN_SHARDS
    assert sources.gguf_shards(path) == [path.parent / n for n in QWEN_SHARDS]
    assert sources.hub_commit(path) == SHA


def test_a_pattern_that_names_two_models_is_an_error(fake_hub):
    spec = HubSource(repo=QWEN, file="qwen2.5-7b-instruct-*.gguf", revision="main")
    with pytest.raises(ArtifactError, match=r"matches 5 files that are not one split GGUF"):
        sources.fetch_hub_file(spec, "models.qwen25.baseline")
    with pytest.raises(ArtifactError, match=r"no file in the repo matches 'nope\*'"):
        sources.fetch_hub_file(HubSource(repo=QWEN, file="nope*", revision="main"), "m")


def test_a_snapshot_fetches_only_what_the_model_needs(fake_hub):
    spec = HubSource(repo="meta-llama/Llama-3.1-8B-Instruct", revision="main")
    folder = sources.fetch_hub_file(spec, "models.llama31_hf.baseline")
    ((kind, kw),) = fake_hub
    assert kind == "snapshot" and "filename" not in kw
    assert "*.safetensors" in kw["allow_patterns"]
    assert {"original/*", "*.pth", "*.bin"} <= set(kw["ignore_patterns"])
    assert sources.hub_commit(folder) == SHA


def test_hub_commit_is_none_outside_the_hub_cache(tmp_path):
    assert sources.hub_commit(tmp_path / "snapshots" / "main" / "m.gguf") is None
    assert sources.shard_names("dir/m.gguf") == ["dir/m.gguf"]


def test_a_split_gguf_is_measured_and_identified_over_every_shard(tmp_path):
    import numpy as np
    from gguf import GGUFWriter

    from quantgate.artifacts.store import inspect_split_gguf

    names = [f"m-{i:05d}-of-00002.gguf" for i in (1, 2)]
    for i, name in enumerate(names):
        writer = GGUFWriter(tmp_path / name, "llama")
        writer.add_tensor(f"t{i}", np.ones((4, 8 * (i + 1)), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    info, sha = inspect_split_gguf(tmp_path / names[0], "models.m.baseline")
    assert info.n_params == 32 + 64 and info.tensor_bytes == 4 * 96
    assert info.file_size == sum((tmp_path / n).stat().st_size for n in names)
    (tmp_path / names[1]).write_bytes((tmp_path / names[1]).read_bytes()[:-4] + b"\0\0\0\1")
    assert inspect_split_gguf(tmp_path / names[0], "m")[1] != sha  # the second shard counts
    (tmp_path / names[1]).unlink()
    with pytest.raises(
        ArtifactError, match=r"models\.m\.baseline \(shard 2 of 2\): file not found"
    ):
        inspect_split_gguf(tmp_path / names[0], "models.m.baseline")


def test_an_artifact_from_the_hub_cache_records_its_commit(tmp_path, registry):
    import numpy as np
    from gguf import GGUFWriter

    from quantgate.artifacts.store import ArtifactStore

    folder = tmp_path / "models--org--m" / "snapshots" / SHA
    folder.mkdir(parents=True)
    writer = GGUFWriter(folder / "m.gguf", "llama")
    writer.add_tensor("t", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    store = ArtifactStore(registry)
    assert store.checked("m", folder / "m.gguf").notes["hub_commit"] == SHA
    plain = tmp_path / "plain.gguf"
    plain.write_bytes((folder / "m.gguf").read_bytes())
    assert "hub_commit" not in store.checked("n", plain).notes


def test_the_report_names_the_hub_commits_a_night_used(registry):
    from quantgate.report.cells import provenance_note
    from quantgate.report.tables import build_tables

    row = {
        "model": "llama31_hf",
        "compression": "awq-int4",
        "pair": "llama31_hf-awq-int4",
        "gate": "kld",
        "metric": "kld_mean",
        "value": 0.01,
        "verdict": "pass",
        "baseline_provenance": {
            "source": "Hub meta-llama/Llama-3.1-8B-Instruct@main",
            "source_type": "BF16",
            "hub_commit": "b" * 40,
        },
        "variant_hub_commit": "c" * 40,
    }
    tables = build_tables([row], registry.data.report.q_score)
    note = provenance_note(tables["llama31_hf"])
    assert f"at commit {'b' * 12}" in note and f"awq-int4 {'c' * 12}" in note
