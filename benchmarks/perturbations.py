"""Verdicts under the floating-point orders another machine would bring.

Runs the smoke tier (``pytest -m smoke``) once per perturbation of the arithmetic: thread count
(1, 2), batch size (64, 512: how llama.cpp splits the matrix products) and KV-cache precision
(F16, F32), each from a results cache of its own (the built artifacts are shared: they are
the same bytes on every machine) so every number is computed afresh. Prints one table of
verdicts per (pair, gate) and the verdict changes against the shipped settings. Required:
no verdict change for the passing variants, every canary caught in every run.

    .venv/bin/python benchmarks/perturbations.py              # the full factorial: 8 runs
    .venv/bin/python benchmarks/perturbations.py --quick      # shipped + 5 one-factor runs
    .venv/bin/python benchmarks/perturbations.py --quick --first 2 -k Q8_0 --max-chunks 2

Throughput and footprint tests are left out (their numbers are timings and sizes, not
arithmetic); about 3 min per run on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from registry_copy import with_absolute_paths

from quantgate.artifacts.cache import results_free_cache
from quantgate.report.rows import junit_outcomes

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"n_threads": 2, "n_batch": 512, "kv_cache_type": "f16"}


def perturbations(quick: bool) -> list[dict[str, object]]:
    if quick:
        one_factor = [
            {"n_threads": 1},
            {"n_batch": 64},
            {"kv_cache_type": "f32"},
            {"n_threads": 1, "n_batch": 64},
            {"n_batch": 64, "kv_cache_type": "f32"},
        ]
        return [SHIPPED, *({**SHIPPED, **p} for p in one_factor)]
    grid = itertools.product((2, 1), (512, 64), ("f16", "f32"))
    return [{"n_threads": t, "n_batch": b, "kv_cache_type": k} for t, b, k in grid]


def _registry(folder: Path, setting: dict[str, object], max_chunks: int = 0) -> Path:
    fixtures = REPO / "fixtures"
    doc = with_absolute_paths(yaml.safe_load((fixtures / "models.yaml").read_text()), fixtures)
    if max_chunks:
        doc["evaluation"]["perplexity"]["max_chunks"] = max_chunks
    settings = doc["models"]["smollm2"]["backend_settings"]
    settings.update({k: v for k, v in setting.items() if k != "n_threads"})
    path = folder / "models.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(
    setting: dict[str, object], select: str | None = None, max_chunks: int = 0
) -> tuple[dict[str, str], float]:
    with tempfile.TemporaryDirectory(prefix="qg-perturb-") as tmp:
        folder = Path(tmp)
        registry, reports = _registry(folder, setting, max_chunks), folder / "reports"
        cmd = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "smoke",
            "tests/test_perplexity.py", "tests/test_retention.py",
            f"--registry={registry}", f"--reports-dir={reports}",
            f"--threads={setting['n_threads']}",
        ] + (["-k", select] if select else [])  # fmt: skip
        cache = results_free_cache(folder)
        env = {**os.environ, "QUANTGATE_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        junit = reports / "junit.xml"
        if not junit.exists():
            raise SystemExit(f"{setting}: no junit.xml; pytest said:\n{proc.stdout[-3000:]}")
        return _outcomes(junit), seconds


#: how the table shows a test's outcome (a canary's strict xfail: caught)
_SHOWN = {"passed": "pass", "failed": "FAIL", "error": "ERROR", "xfailed": "caught"}


def _outcomes(junit: Path) -> dict[str, str]:
    return {
        name.removeprefix("test_"): _SHOWN.get(status, status)
        for name, status in junit_outcomes(junit).items()
    }


def _label(setting: dict[str, object]) -> str:
    return f"t{setting['n_threads']} b{setting['n_batch']} kv {setting['kv_cache_type']}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one-factor perturbations only")
    ap.add_argument("--json", type=Path, help="also write the table as JSON here")
    ap.add_argument("--first", type=int, help="only the first N settings (the shipped first)")
    ap.add_argument("-k", dest="select", help="only the tests pytest -k selects")
    ap.add_argument("--max-chunks", type=int, default=0, help="the first N perplexity chunks")
    opts = ap.parse_args()
    settings = perturbations(opts.quick)[: opts.first]
    results = []
    for setting in settings:
        outcomes, seconds = run(setting, opts.select, opts.max_chunks)
        results.append((setting, outcomes))
        print(f"{_label(setting)}: {len(outcomes)} tests in {seconds:.0f} s", file=sys.stderr)
    reference = results[0][1]
    tests = sorted({t for _, o in results for t in o})
    head = ["test", *(_label(s) for s, _ in results)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for t in tests:
        print("| " + " | ".join([t, *(o.get(t, "—") for _, o in results)]) + " |")
    changes = [
        (t, _label(s), reference.get(t), o.get(t))
        for s, o in results[1:]
        for t in tests
        if o.get(t) != reference.get(t)
    ]
    bad = [o for _, o in results for v in o.values() if v in ("FAIL", "ERROR")]
    print(f"\n{len(settings)} runs, {len(tests)} tests each: {len(changes)} verdict changes")
    for t, label, before, after in changes:
        print(f"  {t}: {before} -> {after} at {label}")
    if opts.json:
        payload = [{"setting": s, "outcomes": o} for s, o in results]
        opts.json.write_text(json.dumps(payload, indent=2))
    # a failed good variant or an uncaught canary is a FAIL/ERROR in some run
    return 1 if changes or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
