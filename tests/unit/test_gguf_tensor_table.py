"""quantgate.artifacts.gguf_file.read_tensors: a GGUF file's tensor table from its header, read the
way gguf-py's GGUFReader reads it (the reference here)."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter, quants

from quantgate.artifacts.gguf_file import TensorInfo, read_tensors
from quantgate.errors import ArtifactError


def test_the_tensor_table_is_gguf_py_s(tmp_path):
    """read_tensors walks past the metadata (gguf-py's reader parses it: seconds for a real
    vocabulary); it must read the same table, string arrays and quantized tensors included."""
    path = tmp_path / "t.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_token_list([f"tok{i}" for i in range(300)])
    writer.add_array("t.scores", [0.5] * 7)
    writer.add_string("t.note", "é")
    rng = np.random.default_rng(0)
    writer.add_tensor("token_embd.weight", rng.standard_normal((8, 64)).astype(np.float16))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(64, dtype=np.float32))
    q8 = quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.ffn_down.weight", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    expected = {
        t.name: TensorInfo(t.tensor_type.name.lower(), int(t.n_bytes))
        for t in GGUFReader(path).tensors
    }
    assert read_tensors(path) == expected
    assert expected["blk.0.ffn_down.weight"] == TensorInfo("q8_0", 4 * 2 * 34)


def test_a_file_that_is_not_gguf_is_one_line(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGML" + bytes(64))
    with pytest.raises(ArtifactError, match="not a GGUF file; re-download or re-convert it"):
        read_tensors(path)
