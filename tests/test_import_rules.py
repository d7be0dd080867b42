"""What may import what: the import graph of src/crossmodal, imports inside functions
included (a loop of lazy imports is still a loop), has no cycles and no arrow from a lower
floor to a higher one. A module's floor comes from its top-level name below `crossmodal`.

To see the graph yourself: `python -m tests.test_import_rules` prints every arrow that
breaks a rule and every cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
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
    # The collection: the one API over an index folder.
    ("collection", frozenset({"engine", "ingest", "collection", "query_terms"})),
    # Thin applications over the library.
    ("top", frozenset({"cli", "serve", "mcp", "distributed", "__main__", "__init__"})),
)

# The one cycle known today, removed by a planned change: the index write path. Its commit
# protocol is spread over engine.py, ingest.py and index/ modules (generations, the folder
# writer) that reach back into the Collection; the write-path change gives that state one
# home and removes this cycle and its upward arrows. A cycle is this one when it holds the
# engine and nothing but write-path modules (engine, ingest, index.*, collection.*), so it is
# recognised while that code moves. Any other cycle fails the test; so does this exception
# once the cycle is gone (then delete it).
WRITE_PATH = ("crossmodal.engine", "crossmodal.ingest", "crossmodal.index.",
              "crossmodal.collection")


def is_write_path_cycle(component: frozenset[str]) -> bool:
    return "crossmodal.engine" in component and all(
        name.startswith(WRITE_PATH) for name in component)


KNOWN_CYCLES: dict[str, Callable[[frozenset[str]], bool]] = {
    "index write path": is_write_path_cycle,
}


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


def _known(component: frozenset[str]) -> str | None:
    return next((label for label, matches in KNOWN_CYCLES.items() if matches(component)), None)


def test_the_graph_is_read_with_lazy_imports():
    # Guards the reader itself: onnx_towers imports the exporter only inside functions.
    assert "crossmodal.models.onnx.export" in graph()["crossmodal.models.towers.onnx_towers"]
    assert "crossmodal.engine" in graph()["crossmodal"]


def test_the_known_exception_takes_the_write_path_alone():
    assert is_write_path_cycle(frozenset({"crossmodal.engine", "crossmodal.index.generations"}))
    assert not is_write_path_cycle(frozenset({"crossmodal.engine", "crossmodal.models.hf"}))
    assert not is_write_path_cycle(frozenset({"crossmodal.index.a", "crossmodal.index.b"}))


def test_every_module_is_on_a_floor():
    for name in modules():
        floor_of(name)


def test_no_import_cycles_but_the_known_ones():
    found = cycles()
    unknown = [sorted(c) for c in found if _known(c) is None]
    assert not unknown, f"import cycles: {unknown}"
    gone = set(KNOWN_CYCLES) - {_known(c) for c in found}
    assert not gone, f"known cycles that no longer exist (remove them from KNOWN_CYCLES): {gone}"


def test_no_floor_imports_a_higher_one():
    # Inside a known cycle arrows run up by its nature; they go with it.
    allowed = {(a, b) for component in cycles() if _known(component)
               for a in component for b in component}
    wrong = [f"{a} -> {b}" for a, b in upward_arrows() if (a, b) not in allowed]
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
        print(f"cycle ({_known(component) or 'unknown'}): {', '.join(sorted(component))}")
