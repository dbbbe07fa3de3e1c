"""No import circles in quantgate, counting every import: at module level, inside functions and
under ``if TYPE_CHECKING:`` alike (an import moved into a function or a type-checking block
still ties the two modules together; it only hides the circle from Python)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from support.helpers import REPO

PACKAGE = REPO / "src" / "quantgate"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports. ``from pkg import name`` counts as an
    import of ``pkg.name`` where that is a module (as Python loads it), else of ``pkg``."""
    root = package.parent
    files = {module_name(p, root): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..y import z
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    imported.add(full if full in files else base)
        graph[name] = set()
        for target in imported:
            while target and target not in files:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
            # importing pkg.sub runs pkg/__init__.py first: an edge to every package on the
            # way (seen: imatrix -> backends.llama_placement ran backends/__init__, which
            # imports backends.base -> artifacts.store -> imatrix)
            parent = target.rpartition(".")[0]
            while parent and parent in files:
                if parent != name and not name.startswith(parent + "."):
                    graph[name].add(parent)
                parent = parent.rpartition(".")[0]
    return graph


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as err:
        return list(err.args[1])
    return None


def test_quantgate_has_no_import_circle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and sum(map(len, graph.values())) > 200  # it read the package
    found = circle(graph)
    assert found is None, "import circle: " + " -> ".join(found or [])


def test_a_circle_through_a_function_or_type_checking_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.c import other\n"
        "thing = 1\n"
    )
    (package / "c.py").write_text("def f():\n    from . import a\n")
    found = circle(import_graph(package))
    assert found is not None and {"pkg.a", "pkg.b", "pkg.c"} <= set(found), found


def test_a_circle_through_a_package_s_init_is_found(tmp_path):
    """``from pkg.sub.leaf import x`` runs pkg/sub/__init__.py, and what it imports."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.base import thing\n")
    (package / "sub" / "base.py").write_text("from pkg.store import other\nthing = 1\n")
    (package / "sub" / "leaf.py").write_text("x = 1\n")
    (package / "store.py").write_text("from pkg.sub.leaf import x\nother = 2\n")
    found = circle(import_graph(package))
    assert found is not None and {"pkg.sub", "pkg.store"} <= set(found), found
