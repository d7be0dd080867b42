"""The ground floor's crash-safe folder swap."""

from __future__ import annotations

import os

import pytest

from crossmodal.storage import atomic_folder


def test_a_folder_takes_its_name_only_when_complete(tmp_path):
    target = tmp_path / "export"
    with atomic_folder(target) as work:
        (work / "a.txt").write_text("one")
        assert not target.exists()  # nothing half-built under the real name
    assert (target / "a.txt").read_text() == "one"
    with atomic_folder(target) as work:
        (work / "b.txt").write_text("two")
    assert sorted(os.listdir(target)) == ["b.txt"]  # replaced whole, not merged
    with pytest.raises(RuntimeError), atomic_folder(target) as work:
        (work / "c.txt").write_text("three")
        raise RuntimeError("crash while building")
    assert sorted(os.listdir(target)) == ["b.txt"]  # a failed build changes nothing
    assert os.listdir(tmp_path) == ["export"]  # and leaves no private folder behind
    assert oct(target.stat().st_mode & 0o777) == "0o755"


def test_the_ground_floor_imports_nothing_of_the_package():
    import ast
    from pathlib import Path

    import crossmodal.storage
    import crossmodal.version

    for module in (crossmodal.storage, crossmodal.version):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + [
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m and m.startswith("crossmodal")], module.__name__
