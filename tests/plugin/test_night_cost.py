"""benchmarks/night_cost.py: a quick run's measured seconds extrapolated to the registry's full
benchmarks (a retention test by its items; every other test as measured)."""

from __future__ import annotations

import json
import subprocess
import sys

from support.helpers import REPO

JUNIT = """<testsuites><testsuite name="pytest">
<testcase classname="tests.test_retention" name="test_retention[smollm2-Q8_0-hellaswag]" time="10"/>
<testcase classname="tests.test_perplexity" name="test_perplexity[smollm2-Q8_0]" time="5"/>
<testcase classname="tests.test_perplexity" name="test_perplexity[smollm2-Q2_K-imatrix]" time="4"/>
<testcase classname="tests.test_noise_floor" name="test_noise_floor[smollm2]" time="3"/>
</testsuite></testsuites>"""


def test_a_retention_test_scales_by_its_items_and_the_rest_is_as_measured(tmp_path):
    (tmp_path / "junit.xml").write_text(JUNIT)
    row = {"pair": "smollm2-Q8_0", "metric": "D_hellaswag", "n_items": 10}
    (tmp_path / "summary.json").write_text(json.dumps({"rows": [row]}))
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "night_cost.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    # hellaswag: 10 s for 10 items, 40 at full scale (the registry's limit) -> 40 s, plus 5 s
    assert "| smollm2-Q8_0 | 0 | 15 | 45 | 0.00 |" in lines
    # the longer pair id is matched whole, not as smollm2-Q2_K's benchmark "imatrix"
    assert "| smollm2-Q2_K-imatrix | 0 | 4 | 4 | 0.00 |" in lines
    assert "| (no pair: noise floors, baselines) | 0 | 3 | 3 | 0.00 |" in lines
    assert "| **2 pairs** |  | 22 | 52 | 0.00 |" in lines
    assert "smollm2 hellaswag: 40 items at full scale" in lines


def test_a_folder_without_a_finished_run_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "night_cost.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"night_cost: {tmp_path}/junit.xml not found: pass the --reports-dir of a finished run"
    )
