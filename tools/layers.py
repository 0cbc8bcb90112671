"""The layer check `make lint` runs: first-party imports point one way and never round.

The layers, each allowed to import those to its left and never to its right:

    events <- engine <- projections <- replay <- runbook

`runbook` may import every layer and nothing imports it; `tests`, `bench` and `tools` may
import everything, and no layer may import them. Every `import` statement counts, wherever
it sits: at module level, inside a function (a lazy import is still a dependency) and under
`if TYPE_CHECKING:` (a type-only import still means one module knows the other, so it obeys
the same direction and counts towards cycles; move the shared type down a layer instead).
A cycle is any set of modules that import each other round, inside one package or across
several. Dynamic imports (`importlib.import_module`) are not seen; the code has none.

Run as `python tools/layers.py [ROOT]`: prints every problem as `path:line: ...` and a
count of the imports checked; exit 1 when anything is wrong.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

LAYERS = ("events", "engine", "projections", "replay", "runbook")
FREE = ("tests", "bench", "tools")  # above every layer: may import all, imported by none
RANK = {name: rank for rank, name in enumerate((*LAYERS, *FREE))}
TOP = len(LAYERS)  # the rank every FREE package shares


class Edge(NamedTuple):
    source: str  # importing module, dotted
    target: str  # imported first-party module, dotted
    path: Path
    line: int


class Result(NamedTuple):
    modules: int
    edges: list[Edge]
    problems: list[str]


def module_files(root: Path) -> dict[str, Path]:
    """Every first-party module under `root`, by dotted name (a package is its `__init__`),
    as a path relative to `root` so problems read `engine/x.py:3` wherever the tree is."""
    found: dict[str, Path] = {}
    for package in RANK:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            parts = relative.with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = relative
    return found


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is a first-party module (None: third-party)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = _base(module, path, node)
    yield from (f"{base}.{alias.name}" for alias in node.names)  # a submodule when one exists


def edges_of(root: Path, module: str, modules: dict[str, Path]) -> list[Edge]:
    path = modules[module]
    tree = ast.parse((root / path).read_bytes(), filename=str(path))
    edges = []
    for node in ast.walk(tree):  # the whole tree: function bodies and TYPE_CHECKING blocks too
        if isinstance(node, ast.Import | ast.ImportFrom):
            for name in _targets(module, path, node):
                target = _known(name, modules)
                if target is not None and target != module:
                    edges.append(Edge(module, target, path, node.lineno))
    return sorted(set(edges), key=lambda e: (e.line, e.target))


def wrong_way(edges: list[Edge]) -> list[str]:
    problems = []
    for edge in edges:
        source, target = edge.source.split(".")[0], edge.target.split(".")[0]
        if RANK[source] < TOP and RANK[target] > RANK[source]:
            allowed = ", ".join(LAYERS[: RANK[source]]) or "nothing outside itself"
            what = f"{edge.source} imports {edge.target} ({source} may import {allowed})"
            problems.append(f"{edge.path}:{edge.line}: wrong-way import: {what}")
    return problems


def _components(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), iterative so deep chains cannot overflow."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    found.append(_pop_component(node, stack, on_stack))
            elif child.target not in index:
                index[child.target] = low[child.target] = len(index)
                stack.append(child.target)
                on_stack.add(child.target)
                work.append((child.target, iter(graph[child.target])))
            elif child.target in on_stack:
                low[node] = min(low[node], index[child.target])
    return [sorted(c) for c in found if len(c) > 1]


def _pop_component(root: str, stack: list[str], on_stack: set[str]) -> list[str]:
    component = []
    while True:
        node = stack.pop()
        on_stack.discard(node)
        component.append(node)
        if node == root:
            return component


def _loop(start: str, members: set[str], graph: dict[str, list[Edge]]) -> list[Edge]:
    """One shortest way round from `start` back to itself inside a component (BFS)."""
    came: dict[str, Edge] = {}
    queue = [start]
    for node in queue:
        for edge in graph[node]:
            if edge.target == start:
                path = [edge]
                while path[0].source != start:
                    path.insert(0, came[path[0].source])
                return path
            if edge.target in members and edge.target not in came:
                came[edge.target] = edge
                queue.append(edge.target)
    raise AssertionError(f"{start} is in a component but no loop found")  # Tarjan guarantees one


def cycles(edges: list[Edge], modules: dict[str, Path]) -> list[str]:
    graph: dict[str, list[Edge]] = {name: [] for name in modules}
    for edge in edges:
        graph[edge.source].append(edge)
    problems = []
    for component in _components(graph):
        loop = _loop(component[0], set(component), graph)
        route = " -> ".join([e.source for e in loop] + [loop[0].source])
        where = ", ".join(f"{e.path}:{e.line}" for e in loop)
        problems.append(f"{loop[0].path}:{loop[0].line}: import cycle: {route} (imports at {where})")
    return problems


def check(root: Path) -> Result:
    modules = module_files(root)
    edges = [edge for name in modules for edge in edges_of(root, name, modules)]
    return Result(len(modules), edges, wrong_way(edges) + cycles(edges, modules))


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    result = check(root)
    for problem in result.problems:
        print(problem)
    verdict = f"{len(result.problems)} problem(s)" if result.problems else "ok"
    print(f"layers: {len(result.edges)} first-party imports checked in {result.modules} modules: {verdict}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
