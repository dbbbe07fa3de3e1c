"""docs/retention.md "Adding a benchmark, YAML only", followed: a task YAML in a task folder, an
entry under the model's ``benchmarks:``, its ``D_`` bound in thresholds/. Nothing else is touched;
the gate then collects a retention test per pair for it, and without the bound refuses to start."""

from __future__ import annotations

import re
import shutil

from support.helpers import REPO, collected

#: the docs' entry, with a local task (a copy of the ARC subset's YAML under a new name)
ENTRY = {"task": "mybench", "metric": "acc", "limit": 100, "num_fewshot": 0}


def test_a_benchmark_is_a_task_yaml_a_registry_entry_and_a_bound(
    gate_run, registry_copy, thresholds_copy, tmp_path
):
    tasks = tmp_path / "tasks"
    shutil.copytree(REPO / "fixtures" / "tasks", tasks)
    text = (tasks / "arc_challenge_smoke.yaml").read_text()
    (tasks / "mybench.yaml").write_text(text.replace("task: arc_challenge_smoke", "task: mybench"))

    def add_benchmark(doc):
        doc["evaluation"]["task_paths"] = [str(tasks)]
        doc["models"]["smollm2"]["benchmarks"]["mybench"] = ENTRY

    registry = registry_copy(add_benchmark)
    args = ("--collect-only", "-q", "-m", "smoke", f"--registry={registry}")

    unbound = gate_run(*args, f"--thresholds={thresholds_copy()}")
    assert unbound.returncode == 4, unbound.output[-2000:]
    assert re.search(
        r"benchmark mybench has no bound: add D_mybench to \S*/smollm2\.yaml", (unbound.output)
    )

    bound = {"smollm2.yaml": {"D_mybench": {"value": 3.0, "mode": "ci"}}}
    run = gate_run(*args, f"--thresholds={thresholds_copy(defaults=bound)}")
    assert run.returncode == 0, run.output[-2000:]
    ids = collected(run)
    for variant in ("Q8_0", "Q4_K_M", "Q2_K"):
        assert f"tests/test_retention.py::test_retention[smollm2-{variant}-mybench]" in ids
    # the four shipped benchmarks are still there, and D_overall now averages five
    assert sum("smollm2-Q8_0-" in i and "test_retention[" in i for i in ids) == 5
