"""The layout's promises, checked on the source: the core imports no app and no migration, no app
imports another app, and no module takes part in an import cycle (lazy imports inside functions
count too: they only hide a cycle until the day someone moves them up).

Read with ``ast`` rather than by importing, so a cycle that happens to import fine still fails.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = "astertrack"
APPS = ("agi", "ami_listener", "tracker", "webadmin")
PACKAGES = (CORE, *APPS, "migrations")
MAX_TOP_LEVEL_CORE_MODULES = 10


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The longest known module that ``name`` names or lies in (``a.b.C`` -> ``a.b``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    """Every project module that ``module`` imports, at any depth of its code."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            target = _resolve(name)
            # a package importing its own submodules is Flask's blueprint-package pattern, not a cycle
            if target is not None and target != module and not target.startswith(module + "."):
                targets.add(target)
    return targets


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_sees_the_real_imports():
    """Guards the checks below against passing on an empty graph."""
    assert "astertrack.db.models" in GRAPH["agi.snapshot"]
    assert "astertrack.db.config_revision" in GRAPH["astertrack.db.models"]
    assert "ami_listener.writer" in GRAPH["ami_listener.rebuild"]  # a relative import


def test_the_core_imports_no_app_and_no_migration():
    wrong = sorted(f"{module} -> {target}" for module, targets in GRAPH.items() if _top(module) == CORE
                   for target in targets if _top(target) != CORE)
    assert wrong == []


@pytest.mark.parametrize("app", APPS)
def test_an_app_imports_only_the_core_and_itself(app):
    wrong = sorted(f"{module} -> {target}" for module, targets in GRAPH.items() if _top(module) == app
                   for target in targets if _top(target) not in (CORE, app))
    assert wrong == []


def test_migrations_import_only_the_core():
    wrong = sorted(f"{module} -> {target}" for module, targets in GRAPH.items() if _top(module) == "migrations"
                   for target in targets if _top(target) not in (CORE, "migrations"))
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_keeps_its_modules_in_rooms():
    top = sorted(p.name for p in (REPO / CORE).glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL_CORE_MODULES, top


def test_every_room_says_what_it_owns():
    for init in sorted((REPO / CORE).glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()) == 1, f"{init.parent.name}/ needs a one-line docstring"


def test_nothing_refers_to_folders_outside_the_repository():
    """A fresh clone has no sibling folders: the suite and the code read only what is inside."""
    sibling = "../" + "shared"  # spelled in two parts so this file does not find itself
    offenders = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "fixtures" and not d.endswith(".egg-info")]
        for name in files:
            path = Path(folder, name)
            if path.suffix in (".py", ".sh", ".md", ".cfg", ".toml", ".conf", ".service", ".html", ".js", ""):
                if sibling in path.read_text(errors="replace"):
                    offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
