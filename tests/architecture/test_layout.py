"""The shape of the code base: no import cycles, small product modules, tooling kept out of the
runtime. Read from the source with `ast`; nothing is imported."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("config", "faceid", "tenants", "inference")
PACKAGES = (*PRODUCT, "toolkit")
MAX_PRODUCT_LINES = 500

pytestmark = pytest.mark.unit


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """Every project module `name` imports, at module level or inside a function alike."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module; `from module import name` the module.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


GRAPH = {name: set(_imports(name, path)) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    return components


def test_no_module_imports_itself_back_through_others():
    assert _cycles() == []


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def late():\n    import a\n")
    monkeypatch.setitem(MODULES, "a", tmp_path / "a.py")
    monkeypatch.setitem(MODULES, "b", tmp_path / "b.py")
    monkeypatch.setitem(GRAPH, "a", set(_imports("a", tmp_path / "a.py")))
    monkeypatch.setitem(GRAPH, "b", set(_imports("b", tmp_path / "b.py")))
    assert ["a", "b"] in _cycles()


def test_product_modules_stay_small():
    big = {
        name: n
        for name, path in MODULES.items()
        if name.split(".")[0] in PRODUCT and (n := len(path.read_text().splitlines())) > MAX_PRODUCT_LINES
    }
    assert big == {}


def test_the_runtime_never_imports_the_toolkit():
    leaks = {
        name: sorted(t for t in targets if t.split(".")[0] == "toolkit")
        for name, targets in GRAPH.items()
        if name.split(".")[0] in PRODUCT
    }
    assert {name: t for name, t in leaks.items() if t} == {}


def test_the_web_side_never_imports_the_worker_tasks():
    web = [name for name in GRAPH if name.split(".")[0] in ("config", "faceid", "tenants")]
    offenders = {
        name for name in web if not name.startswith("faceid.worker") and "faceid.worker.tasks" in GRAPH[name]
    }
    assert offenders == set()


def test_no_test_module_imports_from_a_conftest():
    """Fixtures shared across folders live in tests/plugins/ or the root conftest, helpers in plain
    modules: importing a conftest registers its fixtures twice and runs its side effects again."""
    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "conftest":
                names = {alias.name for alias in node.names}
                if names - {"REPO_ROOT", "SHARED_DATA"}:  # plain constants are fine
                    offenders.append(f"{path.relative_to(REPO)}: {sorted(names)}")
    assert offenders == []
