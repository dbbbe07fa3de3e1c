"""Wall time of the smoke tier serially and with two pytest-xdist workers, from a cold results
cache (the built files are shared: quantizing is not what is compared) and warm, with the
verdicts of each run. Under xdist each worker evaluates on its share of the cores and the
timed gates run alone (quantgate.quiet), so the verdicts must be the serial run's.

    .venv/bin/python benchmarks/xdist_speedup.py [-k EXPR] [--states cold,warm]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quantgate.artifacts.cache import results_free_cache
from quantgate.report.rows import junit_outcomes

REPO = Path(__file__).resolve().parents[1]


def _run(
    cache: Path, reports: Path, workers: int, select: str | None
) -> tuple[float, dict[str, str], int]:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "smoke",
           f"--reports-dir={reports}"] + (["-n", str(workers)] if workers > 1 else []) + (
           ["-k", select] if select else [])  # fmt: skip
    env = {**os.environ, "QUANTGATE_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, junit_outcomes(reports / "junit.xml"), proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", dest="select", help="only the smoke tests pytest -k selects")
    ap.add_argument(
        "--states", default="cold,warm", help="cold (an empty results cache), warm, or both"
    )
    opts = ap.parse_args()
    states = opts.states.split(",")
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="qg-xdist-") as tmp:
        for workers in (1, 2):
            cache = results_free_cache(Path(tmp) / f"n{workers}")
            for state in ("cold", "warm"):
                if state not in states:
                    continue
                reports = Path(tmp) / f"reports-n{workers}-{state}"
                seconds, verdicts, rc = _run(cache, reports, workers, opts.select)
                results[workers, state] = verdicts
                rows.append((workers, state, seconds, rc, len(verdicts)))
                print(f"-n {workers} {state}: {seconds:.0f} s, exit {rc}", file=sys.stderr)
    serial = {state: s for w, state, s, _, _ in rows if w == 1}
    print("| workers | cache | wall time | vs serial | exit | tests | verdicts as serial |")
    print("|---|---|---|---|---|---|---|")
    for workers, state, seconds, rc, n in rows:
        same = results[workers, state] == results[1, state]
        print(
            f"| {workers} | {state} | {seconds:.0f} s | {seconds / serial[state]:.2f} | {rc} | "
            f"{n} | {'yes' if same else 'NO'} |"
        )
    same_everywhere = all(results[2, s] == results[1, s] for s in states)
    return 0 if same_everywhere and all(rc == 0 for *_, rc, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
