"""The list of extension points is whole: every Registry made in the package is listed in
crossmodal/extensions.py with its own kind and group, and the design page is that list."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import crossmodal
from crossmodal.extensions import EXTENSION_POINTS, markdown
from crossmodal.registry import Registry

PACKAGE = Path(crossmodal.__file__).parent
PAGE = PACKAGE.parents[1] / "docs" / "design" / "extensions.md"


def _made_here(path: Path) -> list[str]:
    """Names bound at module level to `Registry(...)` in one file."""
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Registry":
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [target.id for target in targets]
    return names


def registries_in_the_package() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found |= {f"{module.removesuffix('.__init__')}:{name}" for name in _made_here(path)}
    return found


def test_every_registry_is_listed_and_every_listed_one_exists():
    listed = {point.registry for point in EXTENSION_POINTS}
    made = registries_in_the_package()
    assert made - listed == set(), "registries missing from crossmodal/extensions.py"
    assert listed - made == set(), "listed in crossmodal/extensions.py but made nowhere"


def test_each_listed_registry_has_its_kind_and_group():
    groups = [point.group for point in EXTENSION_POINTS]
    assert len(set(groups)) == len(groups)
    for point in EXTENSION_POINTS:
        module, _, attribute = point.registry.partition(":")
        registry = getattr(importlib.import_module(module), attribute)
        assert isinstance(registry, Registry)
        assert (registry.kind, registry.group) == (point.kind, point.group)
        assert len(registry) > 0, f"{point.kind}: no built-in entry"


def test_the_design_page_is_the_list():
    assert PAGE.read_text(encoding="utf-8") == markdown(), (
        "docs/design/extensions.md is out of date: regenerate it with the command it names")


def test_the_scan_finds_registries():
    assert "crossmodal.losses.registry:LOSSES" in registries_in_the_package()
