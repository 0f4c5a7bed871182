"""The package's layers, read from the source: imports run one way and never in a circle.

The core (``src/sweepflow`` but its ``cli``) must not reach up into the Prefect layer
(``tasks``, ``flows``, ``deployments``) or the command line; ``tasks`` never imports
``flows``, ``flows`` never imports ``deployments``. No two modules import each other,
directly or through others, even lazily inside a function: a cycle means two concerns
that cannot be understood (or tested) apart. Every subpackage says what it owns.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("sweepflow", "tasks", "flows", "deployments")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "src" / "sweepflow").rglob("*.py")):
        parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for layer in LAYERS[1:]:
        for path in sorted((ROOT / layer).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import of ours in a module, lazy ones included;
    those under ``if TYPE_CHECKING:`` are left out (they never run)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]

    def walk(node: ast.AST) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package[: len(package) - (child.level - 1)]
                    base = ".".join([*up, *([child.module] if child.module else [])])
                yield base, child.lineno
                for alias in child.names:
                    if f"{base}.{alias.name}" in MODULES:
                        yield f"{base}.{alias.name}", child.lineno
            else:
                yield from walk(child)

    for target, line in walk(ast.parse(path.read_text())):
        if target.partition(".")[0] in LAYERS:
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                yield target, line


GRAPH = {name: sorted(set(_imports(name, path))) for name, path in MODULES.items()}


def _layer(name: str) -> str:
    if name == "sweepflow.__main__" or name.startswith("sweepflow.cli"):
        return "cli"
    return name.partition(".")[0].replace("sweepflow", "core")


# What each layer may import (besides itself).
ALLOWED = {
    "core": set(),
    "tasks": {"core"},
    "flows": {"core", "tasks"},
    "deployments": {"core", "tasks", "flows"},
    "cli": {"core", "tasks", "flows", "deployments"},
}


def test_imports_run_one_way() -> None:
    wrong = [
        f"{MODULES[name].relative_to(ROOT)}:{line} ({_layer(name)}) imports {target} "
        f"({_layer(target)})"
        for name, targets in GRAPH.items()
        for target, line in targets
        if _layer(target) != _layer(name) and _layer(target) not in ALLOWED[_layer(name)]
    ]
    assert not wrong, "imports that run upward:\n" + "\n".join(wrong)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target, _ in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    cycles = _cycles()
    described = [
        " <-> ".join(cycle)
        + ": "
        + "; ".join(
            f"{MODULES[a].relative_to(ROOT)}:{line} imports {b}"
            for a in cycle
            for b, line in GRAPH[a]
            if b in cycle
        )
        for cycle in cycles
    ]
    assert not cycles, "import cycles:\n" + "\n".join(described)


@pytest.mark.parametrize(
    "package",
    sorted(n for n, p in MODULES.items() if p.name == "__init__.py"),
)
def test_every_package_says_what_it_owns(package: str) -> None:
    docstring = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    assert len(docstring.split()) >= 5, f"{MODULES[package]} has no docstring saying what it owns"
