"""Mode sequential's configuration: per-benchmark retention and the chunk means only, and the
full HellaSwag task holding every validation item in the smoke subset's form."""

from __future__ import annotations

import pytest

from quantgate.configuration.registry import Benchmark
from quantgate.configuration.tasks import TaskIndex
from quantgate.configuration.thresholds import _entry
from quantgate.errors import ConfigError
from quantgate.evaluation.retention import population_size
from quantgate.verdicts.sequential import item_order
from support.helpers import REPO


def test_sequential_is_for_per_benchmark_retention_and_the_chunk_means_only():
    for key in ("D_hellaswag", "ppl_increase_pct", "ln_ppl_ratio", "kld_mean"):
        assert _entry(key, {"value": 5, "mode": "sequential"}, "f").mode == "sequential"
    for key in ("D_overall", "flips_hellaswag", "kld_p99", "top1_agreement_pct"):
        with pytest.raises(ConfigError, match=rf"f\.{key}\.mode: sequential stops"):
            _entry(key, {"value": 5, "mode": "sequential"}, "f")


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
