"""The import layering (DESIGN.md, "Layout"): import-linter's contracts, and no import cycles at all.

The parts live in the repository's top-level folders, linked into infertap/; grimp follows
the links, so the graph holds every module (checked, or a contract would pass on nothing).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast  # no broker, no server child

grimp = pytest.importorskip("grimp")
ROOT = Path(__file__).resolve().parents[1]
PARTS = ("serving", "sidecar", "logger", "stream", "detectors", "explainers", "stack")


@pytest.fixture(scope="module")
def graph():
    sys.path.insert(0, str(ROOT))
    try:
        return grimp.build_graph("infertap", cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))


def test_the_graph_holds_every_part(graph) -> None:
    for part in PARTS:
        files = [p for p in (ROOT / part).rglob("*.py") if "__pycache__" not in p.parts]
        modules = {m for m in graph.modules if m == f"infertap.{part}" or m.startswith(f"infertap.{part}.")}
        assert len(modules) == len(files), (part, len(modules), len(files))


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycles(graph) -> None:
    """Lazy imports count: a cycle that only a function-level import closes is still one."""
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    class Graph:
        modules = {"a", "b", "c", "d"}
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, m):
            return self.edges.get(m, set())

    assert _cycles(Graph()) == [["a", "b", "c"]]
