"""No import circles between the modules of ``evalsite/`` and ``workers/``.

Every ``.py`` file is parsed (not imported); every import counts, including those inside functions
and ``TYPE_CHECKING`` blocks: a circle that only closes at call time is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("evalsite", "workers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    }


def imported_names(name: str, path: Path) -> set[str]:
    """Dotted names this module imports, relative imports resolved. ``from a import b`` gives
    ``a.b``; :func:`import_graph` falls back to ``a`` where ``b`` is not a module (an attribute)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in imported_names(name, path):
            # The module itself if it is one of ours, else the closest of ours it names (a.b.attr → a.b).
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [cycle_in(component, graph) for component in components]


def cycle_in(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest circle through the component's first module, as a path that returns to its start."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle in {component}")


def test_the_graph_reads_every_kind_of_import():
    graph = import_graph()
    assert "evalsite.generation.runner" in graph
    # Module level, relative, and ``from package import submodule``.
    assert "evalsite.studies.models" in graph["evalsite.generation.runner"]
    assert "evalsite.generation.jobs" in graph["evalsite.generation.runner"]
    assert "workers.analysis_tasks" in graph["workers.tasks"]
    # Function level.
    assert "evalsite.generation.actions" in graph["evalsite.api.views"]


def test_find_cycles_reports_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    cycles = find_cycles(import_graph())
    report = "\n".join(" -> ".join(cycle) for cycle in cycles)
    print(report)
    assert not cycles, f"import circles between modules of {', '.join(PACKAGES)}:\n{report}"


def test_no_module_in_evalsite_imports_a_task_body():
    graph = import_graph()
    offenders = {
        name: sorted(t for t in targets if t.startswith("workers.") and not t.startswith("workers.backends"))
        for name, targets in graph.items()
        if name.startswith("evalsite")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
