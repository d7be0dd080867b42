"""What may import what: the import graph of src/crossmodal, imports inside functions
included (a loop of lazy imports is still a loop), has no cycles and no arrow from a lower
floor to a higher one. A module's floor comes from its top-level name below `crossmodal`.

To see the graph yourself: `python -m tests.project.test_import_rules` prints every arrow that
breaks a rule and every cycle.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import crossmodal

PACKAGE = Path(crossmodal.__file__).parent

# The floors, bottom up; a module may import modules of its own floor or of a lower one.
FLOORS: tuple[tuple[str, frozenset[str]], ...] = (
    # Ground: import nothing of the package but each other.
    ("ground", frozenset({"errors", "paths", "storage", "version"})),
    # Small shared tools every floor uses: the name registry and its list, threads,
    # config-file reading, item ids.
    ("basics", frozenset({"registry", "extensions", "threads", "config_files", "item_ids"})),
    # The library's lower floor: nothing here knows indexes, training or applications.
    ("lower", frozenset({"models", "data", "losses", "metrics"})),
    ("middle", frozenset({"index", "evaluation", "train", "viz"})),
    # The collection: one index folder's state, its commits and the one API over it (the
    # `collection` package; `engine` and `ingest` re-export it under their first names).
    ("collection", frozenset({"engine", "ingest", "collection", "query_terms"})),
    # Thin applications over the library.
    ("top", frozenset({"cli", "serve", "mcp", "distributed", "__main__", "__init__"})),
)

def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _absolute(node: ast.ImportFrom, importer: str) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if _is_package(importer) else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _nearest_module(name: str) -> str | None:
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str) -> set[str]:
    """The package's modules that `name` imports anywhere in its body, functions included.
    `from pkg import sub` names the submodule; `from pkg import Name` the package."""
    found: set[str] = set()
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, name)
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules()
                       else source for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "crossmodal" or target.startswith("crossmodal."):
                resolved = _nearest_module(target)
                if resolved and resolved != name:
                    found.add(resolved)
    return found


@cache
def graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(imports_of(name)) for name in modules()}


def floor_of(name: str) -> int:
    top = name.split(".")[1] if "." in name else "__init__"
    top = "__main__" if name == "crossmodal.__main__" else top
    for number, (_, names) in enumerate(FLOORS):
        if top in names:
            return number
    raise AssertionError(f"{name}: its top-level name '{top}' is on no floor; add it to FLOORS")


def upward_arrows() -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in graph().items() for b in targets
                  if floor_of(b) > floor_of(a))


def cycles() -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph()[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for name in sorted(graph()):
        if name not in index:
            visit(name)
    return found


def test_the_graph_is_read_with_lazy_imports():
    # Guards the reader itself: onnx_towers imports the exporter only inside functions.
    assert "crossmodal.models.onnx.export" in graph()["crossmodal.models.towers.onnx_towers"]
    assert "crossmodal.engine" in graph()["crossmodal"]


def test_every_module_is_on_a_floor():
    for name in modules():
        floor_of(name)


def test_no_import_cycles():
    found = cycles()
    assert not found, f"import cycles: {[sorted(c) for c in found]}"


def test_applications_reach_an_index_only_through_the_collection():
    # The manifest, the log, the stores and the commit protocol are the collection's to use:
    # the CLI, the server, MCP and the Ray importer go through its public API.
    apps = ("crossmodal.cli", "crossmodal.serve", "crossmodal.mcp", "crossmodal.distributed")
    wrong = [f"{a} -> {b}" for a, targets in graph().items() if a.startswith(apps)
             for b in targets if b.startswith("crossmodal.index")]
    assert not wrong, "\n".join(wrong)


def test_no_floor_imports_a_higher_one():
    wrong = [f"{a} -> {b}" for a, b in upward_arrows()]
    assert not wrong, "imports from a lower floor up:\n" + "\n".join(wrong)


def test_training_runs_fit_through_fit_and_not_each_other():
    # run.py (towers) and the hf trainer both fit through fit.py; fit.py imports neither.
    run, fit, hf = "crossmodal.train.run", "crossmodal.train.fit", "crossmodal.train.hf_parts"
    assert fit in graph()[run] and fit in graph()[hf]
    assert run not in graph()[hf]  # run.py picks hf_parts as the hf: trainer, not back
    assert not graph()[fit] & {run, hf}


if __name__ == "__main__":
    for a, b in upward_arrows():
        print(f"up: {a} (floor {FLOORS[floor_of(a)][0]}) -> {b} (floor {FLOORS[floor_of(b)][0]})")
    for component in cycles():
        print(f"cycle: {', '.join(sorted(component))}")
