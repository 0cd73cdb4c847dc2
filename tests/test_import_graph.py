"""The import graph keeps the layers: no cycle, and no Textual below the dashboard.

Read from the source with ``ast``, so a lazy import inside a function counts as much as one at the
top: it runs as soon as that function does. Imports under ``if TYPE_CHECKING:`` are left out,
because they never run. Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, so a
module depends on its parent packages too.

The MCP worker must never import Textual (it would cost it a second of start-up, and the worker
is no place for a UI), so nothing reachable from the MCP adapter, the tool semantics, the pool
or the OpenCode layer may import it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator_tui"
#: The layers the MCP worker is made of.
WORKER_LAYERS = (
    "orchestrator_tui.mcp",
    "orchestrator_tui.orchestrator",
    "orchestrator_tui.pool",
    "orchestrator_tui.opencode",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _runtime_imports_of(other)
            continue
        yield from _runtime_imports_of(child)


def _runtime_imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _runtime_imports(node)


@cache
def _graph(*, own_parents: bool = True) -> dict[str, frozenset[str]]:
    """Module → the modules it imports: ``orchestrator_tui.*`` names and the top-level names of others.

    ``own_parents``: a module also depends on the packages it sits in (they run before it). Left
    out for finding cycles: a package's ``__init__`` importing its own submodules is no cycle.
    """
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, frozenset[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        own = set(_with_parents(name))
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                modules = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            for module in modules:
                if module in paths:
                    targets.add(module)
                    # Its parents run first, except the ones this module is already inside:
                    # a package's __init__ importing its own submodules is no cycle.
                    targets.update(p for p in _with_parents(module) if p not in own)
                elif not module.startswith("orchestrator_tui"):
                    targets.add(module.split(".")[0])
        if own_parents:
            targets.update(own)
        targets.discard(name)
        graph[name] = frozenset(targets)
    return graph


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _path_to(start: str, wanted: str, graph: dict[str, frozenset[str]]) -> list[str] | None:
    """The import chain from ``start`` to ``wanted`` (breadth first), or None."""
    chains = {start: [start]}
    queue = [start]
    while queue:
        current = queue.pop(0)
        for target in sorted(graph.get(current, ())):
            if target in chains:
                continue
            chains[target] = [*chains[current], target]
            if target == wanted:
                return chains[target]
            queue.append(target)
    return None


def test_the_walk_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    graph = _graph()
    # cli imports the MCP server and the dashboard only inside main(): they still count.
    assert {"orchestrator_tui.mcp.server", "orchestrator_tui.tui.main"} <= graph["orchestrator_tui.cli"]
    assert "textual" in graph["orchestrator_tui.tui.app"]
    # The models render through render.py, which names them for the type checker only.
    assert "orchestrator_tui.orchestrator.render" in graph["orchestrator_tui.orchestrator.types"]
    assert "orchestrator_tui.orchestrator.types" not in graph["orchestrator_tui.orchestrator.render"]


def test_no_module_of_the_package_imports_itself_back() -> None:
    graph = _graph(own_parents=False)
    internal = {name: {t for t in targets if t in graph} for name, targets in graph.items()}
    cycles = []
    for name in sorted(internal):
        for target in sorted(internal[name]):
            back = _path_to(target, name, internal)
            if back is not None:
                cycles.append(" -> ".join([name, *back]))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("layer", WORKER_LAYERS)
def test_the_worker_layers_never_reach_textual(layer: str) -> None:
    graph = _graph()
    modules = [name for name in graph if name == layer or name.startswith(layer + ".")]
    assert modules
    leaks = [chain for name in modules if (chain := _path_to(name, "textual", graph)) is not None]
    assert not leaks, "Textual reachable from the MCP worker's layers:\n" + "\n".join(" -> ".join(c) for c in leaks)
