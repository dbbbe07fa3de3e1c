"""The pytest plugin's pure parts (the gate runs in a child pytest are in tests/plugin/)."""

from __future__ import annotations


def test_a_nodes_model_is_read_from_its_bracket():
    from quantgate.night.xdist_groups import model_of_nodeid

    keys = ["smollm2", "smollm2_ifeval", "llama31"]
    assert model_of_nodeid("t.py::test_retention[smollm2_ifeval-Q8_0-ifeval]", keys) == (
        "smollm2_ifeval"
    )
    assert model_of_nodeid("t.py::test_throughput[smollm2-Q8_0-tg]", keys) == "smollm2"
    assert model_of_nodeid("t.py::test_noise_floor[llama31]", keys) == "llama31"
    assert model_of_nodeid("t.py::test_x[smollm2-Q8_0]@smollm2", keys) == "smollm2"
    assert model_of_nodeid("t.py::test_plain", keys) is None
    assert model_of_nodeid("t.py::test_x[qwen25-Q8_0]", keys) is None
