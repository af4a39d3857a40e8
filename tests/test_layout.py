"""The layout's promises: layers import only downwards and no module imports itself in a cycle.

Specification (``dirac_core``) -> backends (``dirac_torch``, ``dirac_cupy``, ...) -> conformance
(``dirac_conformance``, which loads backends by name) -> the application (``diracnets``).
Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "dirac_core": ROOT / "dirac_core",
    "dirac_conformance": ROOT / "conformance" / "dirac_conformance",
    "diracnets": ROOT / "diracnets",
    **{p.name: p for p in (ROOT / "backends").iterdir() if (p / "__init__.py").exists()},
}
# What each package may import from the project; anything else is a layering error.
ALLOWED = {
    "dirac_core": set(),
    "dirac_conformance": {"dirac_core"},
    "diracnets": {"dirac_core", "dirac_torch"},
}
BACKEND_ALLOWED = {"dirac_core"}
# Modules whose one job is to translate between two backends' models, and so name both.
INTEROP = {"dirac_jax.interop": {"dirac_torch"}}


def _module_name(package: str, path: Path) -> str:
    parts = path.relative_to(PACKAGES[package]).with_suffix("").parts
    return ".".join((package, *parts)).removesuffix(".__init__")


def _imports(package: str, path: Path) -> set[str]:
    """Project modules ``path`` imports, relative imports resolved."""
    name = _module_name(package, path)
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                target = f"{anchor}.{node.module}" if node.module else anchor
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            graph[_module_name(package, path)] = _imports(package, path)
    # "from pkg import name" names a module only when that module exists.
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    graph = _graph()
    # A package's __init__ re-exporting its submodules is not a cycle of ideas.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_layers_import_only_downwards(package: str) -> None:
    allowed = ALLOWED.get(package, BACKEND_ALLOWED) | {package}
    graph = _graph()
    wrong = {
        f"{module} imports {dep}"
        for module, deps in graph.items() if module.split(".")[0] == package
        for dep in deps if dep.split(".")[0] not in allowed | INTEROP.get(module, set())
    }
    assert not wrong, sorted(wrong)


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
