"""The Hub offline is a clear one-line error (a child process with the offline variables)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from quantgate.configuration.registry import HubSource

SPEC = HubSource(
    repo="bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
    file="Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
    revision="0123abc",
)


#: Study A's imatrix calibration text, as the nightly entries name it: a dataset repo's file
WIKITEXT_ZIP = HubSource(
    repo="ggml-org/ci", repo_type="dataset", file="wikitext-2-raw-v1.zip", revision="main"
)


@pytest.mark.parametrize(
    ("spec", "ref"),
    [
        (
            SPEC.model_copy(update={"revision": "main"}),
            "hf://bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"
            "@main",
        ),
        (WIKITEXT_ZIP, "hf://datasets/ggml-org/ci/wikitext-2-raw-v1.zip@main"),
    ],
    ids=["model", "dataset"],
)
def test_hub_offline_is_a_clear_error(tmp_path, spec, ref):
    # A real call into huggingface_hub with HF_HUB_OFFLINE=1 (read at its import: a child
    # process) and an empty cache: the same path a user without network takes.
    code = (
        "from quantgate.configuration.registry import HubSource\n"
        "from quantgate.artifacts import sources\n"
        f"sources.fetch_hub_file(HubSource(**{spec.model_dump()!r}), 'models.llama31.baseline')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "QUANTGATE_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0
    assert last.startswith(
        f"quantgate.errors.ArtifactError: models.llama31.baseline: cannot fetch {ref}: "
        "HF_HUB_OFFLINE is set and the file is not in"
    ), last
