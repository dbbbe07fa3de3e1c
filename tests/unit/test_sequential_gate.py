"""Mode sequential on the real model: D_hellaswag judged on items in one seeded random order,
a batch at a time, stopping once the confidence sequence decides (quantgate.sequential). A
damaged model is failed early on a fraction of the items; Q8_0, undecided on 100 items, gets
mode ci's fixed-sample verdict; a rerun reads every batch from the cache."""

from __future__ import annotations

import re

import pytest

from quantgate.cache import results_free_cache
from quantgate.errors import ConfigError
from quantgate.registry import Benchmark
from quantgate.retention import population_size
from quantgate.sequential import item_order
from quantgate.tasks import TaskIndex
from quantgate.thresholds import _entry

from .damage import damaged_copy
from .helpers import REPO

RET = "tests/test_retention.py"
BATCH = 20


def test_sequential_is_for_per_benchmark_retention_only():
    assert _entry("D_hellaswag", {"value": 5, "mode": "sequential"}, "f").mode == "sequential"
    for key in ("D_overall", "flips_hellaswag", "kld_mean"):
        with pytest.raises(ConfigError, match=rf"f\.{key}\.mode: sequential stops"):
            _entry(key, {"value": 5, "mode": "sequential"}, "f")


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


def test_the_full_hellaswag_task_holds_every_validation_item_in_the_smoke_subsets_form():
    """benchmarks/sequential_hellaswag.py's task: all 10,042 items of HellaSwag val (gzipped
    JSON Lines), the smoke subset being its first 100, and the seeded order covers them once."""
    tasks = TaskIndex([REPO / "fixtures" / "tasks"], REPO)
    full = Benchmark(task="hellaswag_full", metric="acc_norm")
    assert population_size(full, tasks, "t") == 10_042
    assert sorted(item_order(10_042)) == list(range(10_042))
    smoke = Benchmark(task="hellaswag_smoke", metric="acc_norm")
    loaded = {
        name: tasks.task_manager(upstream=False).load(tasks.resolve(name, "t"))["tasks"][name]
        for name in ("hellaswag_full", "hellaswag_smoke")
    }
    first = loaded["hellaswag_full"].eval_docs.select(range(100))
    assert list(first) == list(loaded["hellaswag_smoke"].eval_docs)
    assert population_size(smoke, tasks, "t") == 100
