"""The README and docs/ stay true to the repository: every relative link (and its #anchor)
resolves, and every command-line option they name is one the named tools take: pytest with
this project's plugins, quantgate's modules, the scripts under benchmarks/, and the few other
tools' options the docs quote (listed below, each with its tool)."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from support.helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

#: options of tools that are neither pytest nor quantgate's, as the docs quote them
OTHER_TOOLS = {
    "llama-quantize": {
        "--tensor-type",
        "--output-tensor-type",
        "--token-embedding-type",
        "--imatrix",
    },
    "llama.cpp's tools": {"--no-repack"},
    "pip": {"--no-cache-dir", "--ignore-installed"},
    "tox": {"--notest"},
    "lm-eval (through python -m quantgate.backends.lm_eval_cli)": {
        "--include_path",
        "--log_samples",
        "--output_path",
    },
    "ray start": {"--head", "--address"},
}


def _code(text: str) -> list[tuple[int, str]]:
    """(line number, text) of every code block line and every inline code span."""
    found, in_block = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            found.append((number, line))
        else:
            found += [(number, span) for span in re.findall(r"`([^`]+)`", line)]
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = page.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a "# comment" in a block is no heading
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@cache
def _options_of(*command: str) -> frozenset[str]:
    proc = subprocess.run(
        [*command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    # a tool without --help (llama_placement's launcher) prints its usage and exits 2
    assert proc.returncode in (0, 2), f"{' '.join(command)} --help: {proc.stderr[-2000:]}"
    return frozenset(re.findall(r"--[a-z][a-z0-9_-]*", proc.stdout + proc.stderr))


def _known_options(texts: list[str]) -> set[str]:
    known = set(_options_of(sys.executable, "-m", "pytest", "-p", "no:cacheprovider"))
    named = "\n".join(texts)
    for module in sorted(set(re.findall(r"python -m (quantgate\.[a-z_.]+)", named))):
        known |= _options_of(sys.executable, "-m", module)
    for script in sorted(set(re.findall(r"(benchmarks/[a-z_]+\.py)", named))):
        known |= _options_of(sys.executable, script)
    for options in OTHER_TOOLS.values():
        known |= options
    return known


def test_the_readme_is_a_front_door():
    """About 200 lines; everything else is one page per concern under docs/, each linked."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)", readme))
    pages = {p.name for p in PAGES if p.parent.name == "docs"}
    assert pages <= linked, f"docs/ pages the README does not link: {sorted(pages - linked)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = []
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading with that anchor in {file.name}")
    assert not broken, f"{page.relative_to(REPO)}: {broken}"


def test_every_command_line_option_the_docs_name_exists():
    spans = {page: _code(page.read_text()) for page in PAGES}
    known = _known_options([t for found in spans.values() for _, t in found])
    unknown = [
        f"{page.relative_to(REPO)}:{number}: {option}"
        for page, found in spans.items()
        for number, text in found
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", text)
        if option not in known
    ]
    assert not unknown, "options no tool the docs name takes:\n" + "\n".join(unknown)
