"""The pytest plugin's command-line options: selection (--model, --compression, --limit),
configuration (--registry, --thresholds), reports, the baseline's mode, sharding, the store."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def _positive_int(option: str) -> Callable[[str], int]:
    """argparse's type for ``option``: a usage error naming it, not argparse's own text."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise pytest.UsageError(f"{option}: expected a positive integer, got {value!r}")
        return n

    return parse


def add_options(parser: pytest.Parser) -> None:
    """quantgate's command-line options (docs/selecting-and-adding.md lists them; a test
    checks that every option the docs name exists)."""
    group = parser.getgroup("quantgate", "quantgate: regression gate for compressed LLMs")
    group.addoption(
        "--model",
        action="append",
        default=[],
        metavar="KEY",
        help="run only these model keys from the registry (repeat or comma-separate). Default: all",
    )
    group.addoption(
        "--compression",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these compression names (repeat or comma-separate). Default: all",
    )
    group.addoption(
        "--registry",
        default="fixtures/models.yaml",
        metavar="PATH",
        help="registry of models and compressions, relative to rootdir. Default: %(default)r",
    )
    group.addoption(
        "--thresholds",
        default="thresholds",
        metavar="DIR",
        help="threshold files (default.yaml, <model>.yaml), relative to rootdir. "
        "Default: %(default)r",
    )
    group.addoption(
        "--reports-dir",
        default="reports",
        metavar="DIR",
        help="where junit.xml, report.html, benchmark.json and summary.json go, "
        "relative to rootdir. Default: %(default)r",
    )
    group.addoption(
        "--baseline",
        choices=("live", "pinned"),
        default="live",
        help="retention baseline: the baseline model run on the same items (live) or the "
        "registry's pinned_baseline scores (pinned). Default: %(default)r",
    )
    group.addoption(
        "--compare",
        default=None,
        metavar="PATH",
        help="an earlier summary.json: summary.md/html list every value or verdict that changed",
    )
    group.addoption(
        "--underpowered",
        choices=("warn", "error"),
        default="warn",
        help="a gate whose sample cannot see a loss of twice its threshold (minimum detectable "
        "loss at 80 %% power, from the measured interval): warn, or fail the test with an "
        "error. Default: %(default)r",
    )
    group.addoption(
        "--shard",
        default=None,
        metavar="K/N",
        help="run the K-th of N pair-granular parts of the selection (one per machine of a "
        "night; python -m quantgate.night.merge joins their reports). Default: everything",
    )
    group.addoption(
        "--shard-timings",
        default=None,
        metavar="PATH",
        help="a previous summary.json: --shard balances the parts by its per-pair wall "
        "times. Default: equal pair counts",
    )
    group.addoption(
        "--quantgate-plan",
        default=None,
        nargs="?",
        const="",
        metavar="SECONDS",
        help="print the selected pairs with their expected cost (--shard-timings), and with a "
        "budget in seconds per machine the shards it needs; use with --collect-only",
    )
    group.addoption(
        "--store",
        default=None,
        metavar="URL",
        help="a shared store behind the local cache (a path, s3://bucket/prefix, gs://...): "
        "artifacts and scored results are read from it before being computed, and published "
        "to it after. Default: $QUANTGATE_STORE, else the local cache alone",
    )
    group.addoption(
        "--limit",
        default=None,
        type=_positive_int("--limit"),
        metavar="N",
        help="score each benchmark on at most the first N items of each task (lm-eval's "
        "limit; a seeded fraction gives way to it): a quick tier of the full sets, per commit",
    )
    group.addoption(
        "--threads",
        default=None,
        type=_positive_int("--threads"),
        metavar="N",
        help="threads for every backend, overriding the registry. "
        "Default: the registry's, else all cores",
    )
    group.addoption(
        "--diagnose",
        nargs="?",
        const=4,
        default=None,
        type=_positive_int("--diagnose"),
        metavar="CHUNKS",
        help="after the run, for every GGUF pair that failed its perplexity or KLD gate: "
        "each block's own KLD on CHUNKS perplexity chunks (default 4), ranked, in "
        "summary.html and reports/diagnosis/ (python -m quantgate.diagnose). Default: off",
    )
    group.addoption(
        "--in-process",
        action="store_true",
        default=False,
        help="load llama.cpp models in the pytest process (for a debugger) instead of one "
        "child process each; a native crash then ends the whole session. Default: children",
    )
