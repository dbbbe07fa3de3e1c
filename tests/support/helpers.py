"""Helpers for the project's own tests: run the real gate in a child pytest and read its
reports, and write the threshold texts tests need. Imported by tests and by conftest.py (whose
fixtures wrap them); nothing here is a fixture."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# Everything here runs offline: without this, huggingface_hub retries an unreachable Hub for
# about a minute per file before giving up.
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@dataclass
class GateRun:
    returncode: int
    output: str
    reports: Path

    def outcomes(self) -> dict[str, str]:
        """JUnit testcase name -> passed / failed / error / xfailed / skipped."""
        from quantgate.report.rows import junit_outcomes

        return junit_outcomes(self.reports / "junit.xml")

    def summary(self) -> dict[tuple[str, str], dict]:
        """(pair, metric) -> summary.json row."""
        doc = json.loads((self.reports / "summary.json").read_text())
        return {(r["pair"], r["metric"]): r for r in doc["rows"]}


def gate_command(*args: str, reports: Path) -> list[str]:
    """``pytest ARGS`` as a user would run the gate, reports to ``reports``."""
    # path options take the `--opt=PATH` form: pytest picks its rootdir from positional-looking
    # paths before plugins are loaded, so `--opt PATH` with an existing PATH would move it
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--reports-dir={reports}",
        *args,
    ]


#: set (by support/fixtures.py) while a test marked ``untimed`` runs
UNTIMED = "QUANTGATE_TESTS_UNTIMED"


def run_gate(
    *args: str, reports: Path, env: dict[str, str] | None = None, timeout: int = 1800
) -> GateRun:
    """Run ``gate_command(ARGS)`` in the repo, offline, and keep its output and reports."""
    proc = subprocess.run(
        gate_command(*args, reports=reports),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **OFFLINE, **(env or {})},
    )
    run = GateRun(proc.returncode, proc.stdout + proc.stderr, reports)
    if os.environ.get(UNTIMED):
        check_untimed(reports)
    return run


def check_untimed(reports: Path) -> None:
    """Fail the calling test if the child run that wrote ``reports`` ran a timed gate: make
    test runs a test marked ``untimed`` beside other work, where a timed gate would read its
    neighbours' load as the variant's speed."""
    junit = reports / "junit.xml"
    if not junit.exists():
        return
    from quantgate.report.rows import junit_outcomes

    if timed := sorted(k for k in junit_outcomes(junit) if k.startswith("test_throughput")):
        pytest.fail(f"a test marked untimed ran timed gates in its child: {timed}")


def collected(run: GateRun) -> list[str]:
    """The test ids a ``--collect-only -q`` run printed."""
    return re.findall(r"^(tests/\S+::\S+)$", run.output, flags=re.M)


def with_retention_bounds(text: str) -> str:
    """A default.yaml text plus a D_<benchmark> bound for every benchmark of the shipped
    registry it lacks (thresholds/ requires one for each), for tests that write their own."""
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        return text
    registry = yaml.safe_load((REPO / "fixtures" / "models.yaml").read_text())
    benches = {b for m in registry["models"].values() for b in m.get("benchmarks") or {}}
    defaults = doc.setdefault("defaults", None) or {}
    doc["defaults"] = {**{f"D_{b}": 5.0 for b in sorted(benches)}, **defaults}
    return yaml.safe_dump(doc, sort_keys=False)


#: perplexity chunks for the transformers families' e2e runs (of the excerpt's 13): float32 and
#: dequantizing CPU kernels take 1-4 s a chunk, and every verdict there is far from its bound
#: (good variants' PPL increases under 3 %, canaries' over 25 %, bound 10 %)
HF_FAMILY_CHUNKS = 6


def hf_family_chunks(doc: dict) -> None:
    """A registry_copy edit: smollm2_hf's perplexity on HF_FAMILY_CHUNKS chunks (one shared
    cache key for the tests that use it, so the baseline's log-probs are computed once)."""
    evaluation = doc["models"]["smollm2_hf"]["evaluation"]
    # a new mapping: the parsed YAML shares the top-level one through its merge key
    evaluation["perplexity"] = {**evaluation["perplexity"], "max_chunks": HF_FAMILY_CHUNKS}


def short_throughput(doc: dict) -> None:
    """A registry_copy edit: a quarter of llama-bench's workload for the GGUF models, for
    tests that need a throughput verdict, not its number (the shipped variants' tg ratios
    are 1.4-1.8 against bounds of 0.8-0.85, pp 0.87-1.25 against 0.5)."""
    doc["evaluation"]["throughput"] = {
        **doc["evaluation"]["throughput"],
        "n_prompt": 64,
        "n_gen": 16,
        "rounds": 3,
    }


def verdict_rows(folder: Path) -> list[tuple]:
    """A reports folder's summary.json rows as sorted (pair, metric, value, verdict): what two
    runs of the same pairs must agree on."""
    doc = json.loads((folder / "summary.json").read_text())
    return sorted((r["pair"], r["metric"], r["value"], r["verdict"]) for r in doc["rows"])


class Request:
    """The part of lm-eval's Instance an lm-eval model reads."""

    def __init__(self, *args) -> None:
        self.args = args


def hellaswag_requests(n_items: int) -> list[Request]:
    """lm-eval's hellaswag loglikelihood requests for the first ``n_items`` validation items."""
    from lm_eval.tasks.hellaswag.utils import preprocess

    path = REPO / "fixtures" / "data" / "hellaswag" / "hellaswag_val_first100.jsonl"
    out = []
    for line in path.read_text().splitlines()[:n_items]:
        doc = json.loads(line)
        query = preprocess(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"])
        out += [Request(query, " " + preprocess(e)) for e in doc["endings"]]
    return out


# -- the golden smoke run (issue 13: every number identical before and after a redesign) ------
GOLDEN_SMOKE = REPO / "tests" / "e2e" / "golden" / "smoke.json"
#: what measures the machine at the moment (speed, memory, load time), not the model: two runs
#: on one machine differ there (measured: tokens/s by up to 20 %, RSS by 0.3 MiB), so a golden
#: file keeps those gates' verdicts and thresholds but not their numbers
MOMENT_METRICS = frozenset({"pp_tps_ratio", "tg_tps_ratio", "peak_rss_mib", "peak_vram_mib"})
MOMENT_FIELDS = frozenset(
    {"tokens_per_s", "tokens_per_s_by_length", "load_seconds"}
    | {f"{side}{m}" for side in ("", "baseline_") for m in ("peak_rss_mib", "peak_vram_mib")}
)
_MOMENT_NUMBERS = ("value", "baseline", "ci_low", "ci_high", "minimum_detectable", "underpowered")


def _moment_property(name: str) -> bool:
    """A JUnit property of a moment's measurement ("tg_tps_ratio.baseline", "load_seconds")."""
    head = name.split(".")[0]
    return head in MOMENT_METRICS | MOMENT_FIELDS or head in ("pp_tokens_per_s", "tg_tokens_per_s")


def machine_fingerprint() -> dict[str, object]:
    """What the smoke tier's numbers depend on besides the code: the CPU and the feature flags
    that choose its kernels (their order of arithmetic), the thread count, and the scoring
    libraries' versions. The model name alone is not enough: two "AMD EPYC" VMs, one with
    AVX-512 VNNI/BF16 and VP2INTERSECT and one without, scored the Q2_K canary's items apart
    (arc_challenge 0.25 against 0.275; same verdicts)."""
    from importlib.metadata import version

    from quantgate.night.machine import cpu_facts

    cpu = cpu_facts()  # what the reports' "made on" line records
    return {
        "cpu": cpu.model,
        "cpu_flags": cpu.kernel_flags,
        "cores": os.cpu_count(),
        **{pkg: version(pkg) for pkg in ("llama_cpp_python", "lm_eval", "numpy", "scipy")},
    }


def golden_view(reports: Path) -> dict[str, object]:
    """A smoke run's summary.json rows and JUnit outcomes and properties, less what measures
    the moment (MOMENT_*) and the run's date and wall times: what a refactor must not change."""
    import xml.etree.ElementTree as ET

    rows = {}
    for row in json.loads((reports / "summary.json").read_text())["rows"]:
        kept = {k: v for k, v in row.items() if k not in MOMENT_FIELDS}
        if row["metric"] in MOMENT_METRICS:
            kept = {k: v for k, v in kept.items() if k not in _MOMENT_NUMBERS}
        rows[f"{row['pair']} {row['metric']}"] = kept
    properties = {}
    for case in ET.parse(reports / "junit.xml").iter("testcase"):
        properties[case.get("name", "")] = [
            [p.get("name"), p.get("value")]
            for p in case.iter("property")
            if p.get("name") != "quantgate_row" and not _moment_property(p.get("name", ""))
        ]
    return {
        "machine": machine_fingerprint(),
        "outcomes": GateRun(0, "", reports).outcomes(),
        "rows": rows,
        "junit_properties": properties,
    }
