"""The import rule of docs/architecture.md, checked on every module of the package.

Stages, left to right: adapters ← leaves (``monitor/*.py``) ← rules ← db ← alerts ←
ingest ← service ← cli. A module may import only from its own stage or one to its
left, and no two modules may import each other, however indirectly. Imports inside
functions count (a lazy import is still a dependency); ``if TYPE_CHECKING:`` blocks do
not, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ["adapters", "leaves", "rules", "db", "alerts", "ingest", "service", "cli"]
PACKAGES = ("monitor", "adapters")


def module_names() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_names()


def stage(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "adapters":
        return "adapters"
    if len(parts) > 1 and parts[1] in STAGES:
        return parts[1]
    if len(parts) > 1 and parts[1] == "__main__":
        return "cli"
    return "leaves"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node``, skipping the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (a module, or the package holding it)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from monitor.db import repo`` depends on monitor.db.repo.
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            resolved = _resolve(target)
            if resolved and resolved != module:
                found.add(resolved)
    # A module depends on the package it lives in only through its __init__, which
    # Python runs first anyway; that edge is not a design choice, leave it out.
    return {t for t in found if not module.startswith(f"{t}.")}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_walk_sees_the_modules() -> None:
    # A walker that finds nothing would pass everything below.
    assert {"monitor.ingest.feeds", "monitor.cli.main", "adapters.feed"} <= set(MODULES)
    assert "monitor.db.repo" in GRAPH["monitor.ingest.feeds"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_left(module: str) -> None:
    mine = STAGES.index(stage(module))
    backward = sorted(t for t in GRAPH[module] if STAGES.index(stage(t)) > mine)
    assert not backward, f"{module} ({stage(module)}) imports from the right: {backward}"


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            connect(node)
    assert not cycles, f"import cycles: {cycles}"


def test_adapters_never_import_monitor() -> None:
    leaks = {m: sorted(t for t in GRAPH[m] if t.startswith("monitor")) for m in GRAPH}
    assert not {m: t for m, t in leaks.items() if m.startswith("adapters") and t}
