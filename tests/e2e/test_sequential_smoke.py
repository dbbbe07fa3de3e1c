"""The smoke tier in mode sequential (issue 17: "the smoke tier can use it without changing any
smoke verdict"): every shipped bound that mode sequential accepts (D_<benchmark>, PPL increase,
mean KLD) switched from ci to sequential, with looks small enough to stop early (10 items, 4
chunks), on the real model. Every test's outcome and every row's verdict is the golden smoke
run's (tests/e2e/golden/smoke.json, mode ci)."""

from __future__ import annotations

import json

import pytest
import yaml

from quantgate.configuration.thresholds import accepts_sequential
from support.helpers import GOLDEN_SMOKE

TESTS = ("tests/test_retention.py", "tests/test_perplexity.py")
ITEM_BATCH, CHUNK_BATCH = 10, 4  # 40 items: looks at 10, 20, 30; 13 chunks: at 8, 12


def _to_sequential(path) -> list[str]:
    """Every mode-ci bound of a metric mode sequential accepts, switched to it in place."""
    doc = yaml.safe_load(path.read_text())
    switched = []
    for table in (doc.get("defaults") or {}, *(doc.get("compressions") or {}).values()):
        for key, bound in table.items():
            if accepts_sequential(key) and isinstance(bound, dict) and bound["mode"] == "ci":
                bound["mode"] = "sequential"
                switched.append(key)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return switched


@pytest.mark.real_model
def test_the_smoke_tier_in_mode_sequential_keeps_every_verdict(
    gate_run, registry_copy, thresholds_copy, record_property
):
    def edit(doc):
        doc["evaluation"]["perplexity"]["sequential_batch"] = CHUNK_BATCH
        for bench in doc["models"]["smollm2"]["benchmarks"].values():
            bench["sequential_batch"] = ITEM_BATCH

    thresholds = thresholds_copy()
    switched = _to_sequential(thresholds / "smollm2.yaml")
    assert {"D_hellaswag", "D_truthfulqa_mc2", "ppl_increase_pct", "kld_mean"} <= set(switched)
    run = gate_run(
        *TESTS, "-m", "smoke", f"--registry={registry_copy(edit)}",
        f"--thresholds={thresholds}", "--model", "smollm2",
    )  # fmt: skip
    golden = json.loads(GOLDEN_SMOKE.read_text())
    outcomes = run.outcomes()
    assert outcomes, run.output[-3000:]
    assert outcomes == {t: o for t, o in golden["outcomes"].items() if t in outcomes}, run.output[
        -3000:
    ]
    assert {t.split("[")[0] for t in outcomes} == {
        "test_retention", "test_retention_overall", "test_perplexity", "test_kl_divergence"
    }  # fmt: skip
    rows = run.summary()
    judged = {(pair, metric): row for (pair, metric), row in rows.items() if row.get("verdict")}
    for (pair, metric), row in judged.items():
        assert row["verdict"] == golden["rows"][f"{pair} {metric}"]["verdict"], (pair, metric, row)
    # the mode took effect on every switched gate of every variant, and some looked early
    stops = {
        (pair, metric): row["sequential"]
        for (pair, metric), row in rows.items()
        if metric in switched and pair != "smollm2-noise_floor"
    }
    assert len(stops) == 3 * (4 + 2) and all(stops.values()), stops
    record_property(
        "stops", {f"{p} {m}": f"{s['stop']} {s['items_used']}/{s['items_available']}"
                  for (p, m), s in stops.items()},
    )  # fmt: skip
