"""Mode sequential on the real model: D_hellaswag judged on items in one seeded random order,
a batch at a time, stopping once the confidence sequence decides (quantgate.verdicts.sequential). A
damaged model is failed early on a fraction of the items; Q8_0, undecided on 100 items, gets
mode ci's fixed-sample verdict; a rerun reads every batch from the cache."""

from __future__ import annotations

import re

import pytest

from quantgate.artifacts.cache import results_free_cache
from support.damage import damaged_copy

RET = "tests/test_retention.py"
BATCH = 20


@pytest.mark.real_model
def test_a_damaged_model_fails_early_and_q8_0_passes(
    gate_run, registry_copy, thresholds_copy, smollm2_artifacts, tmp_path
):
    baseline, _ = smollm2_artifacts
    # every block's FFN down-projection permuted: it runs, near chance (D about 45 %)
    wrecked = damaged_copy(
        baseline.path, tmp_path / "wrecked.gguf", r"blk\.\d+\.ffn_down\.weight", "shuffle"
    )

    def edit(doc):
        model = doc["models"]["smollm2"]
        model["benchmarks"]["hellaswag"] |= {"limit": 100, "sequential_batch": BATCH}
        model["compressions"]["wrecked"] = {
            "method": "prebuilt", "source": {"path": str(wrecked)}
        }  # fmt: skip

    bound = {"D_hellaswag": {"value": 10.0, "mode": "sequential"}}
    args = (
        RET, f"--registry={registry_copy(edit)}",
        f"--thresholds={thresholds_copy(defaults={'smollm2.yaml': bound})}",
        "--model", "smollm2", "--compression", "Q8_0,wrecked", "-k", "test_retention[",
        "-k", "hellaswag",
    )  # fmt: skip
    # no scored result yet (the built files are shared): every batch is computed once
    fresh = {"QUANTGATE_CACHE": str(results_free_cache(tmp_path / "machine"))}
    run = gate_run(*args, env=fresh)
    assert run.outcomes() == {
        "test_retention[smollm2-Q8_0-hellaswag]": "passed",
        "test_retention[smollm2-wrecked-hellaswag]": "failed",
    }, run.output[-3000:]
    rows = run.summary()
    broken = rows["smollm2-wrecked", "D_hellaswag"]
    assert broken["verdict"] == "FAIL" and broken["sequential"]["stop"] == "fail"
    assert broken["sequential"]["items_used"] < 100 == broken["sequential"]["items_available"]
    assert broken["n_items"] == broken["sequential"]["items_used"]
    low, high = broken["sequential"]["sequence95"]
    assert 10.0 < low <= broken["value"] <= high
    assert "D_hellaswag = " in run.output and "mode sequential: decided fail" in run.output
    good = rows["smollm2-Q8_0", "D_hellaswag"]
    # undecided until its items ran out (D about 2 %, 100 items): mode ci's verdict
    assert good["verdict"] == "pass" and good["sequential"]["stop"] == "exhausted"
    assert good["sequential"]["items_used"] == 100 and good["ci_low"] < 10.0
    # the items are scored a batch at a time, each batch once per model
    batches = re.findall(
        r"smollm2-(\S+): lm-eval hellaswag_smoke \((\d+) chosen items\): done", run.output
    )
    assert batches and all(int(n) == BATCH for _, n in batches)
    # a rerun decides the same from the cached batches: no item is scored again
    again = gate_run(*args, env=fresh)
    assert again.outcomes() == run.outcomes()
    assert "lm-eval hellaswag_smoke" not in again.output
    assert again.summary()["smollm2-wrecked", "D_hellaswag"]["sequential"] == broken["sequential"]
