"""The front door: a short README without lab history, and a docs site that builds strictly,
offline, with its benchmark tables rendered from the result files."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

README = REPO / "README.md"
HISTORY = re.compile(r"\b(issue|stop)\s+\d+", re.IGNORECASE)
DEMO = "pip install torch==2.13.0 -e . && crossmodal demo"
TESTS = "pip install torch==2.13.0 -e '.[dev]' && python -m pytest"


def _docs_tools_missing() -> str | None:
    for module in ("mkdocs", "material", "mkdocs_click", "mkdocstrings"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def test_readme_is_short_and_has_no_history() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert not HISTORY.findall(text), HISTORY.findall(text)


def test_docs_pages_have_no_history() -> None:
    for page in (REPO / "docs").rglob("*.md"):
        found = HISTORY.findall(page.read_text(encoding="utf-8"))
        assert not found, f"{page.relative_to(REPO)}: {found}"


def test_readme_keeps_the_two_commands_and_ci_runs_the_second() -> None:
    text = README.read_text(encoding="utf-8")
    assert DEMO in text and TESTS in text
    assert TESTS in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_links_point_at_files() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if not t.startswith("http") and not (REPO / t).exists()]
    assert not missing, missing


def test_readme_model_table_is_the_one_rendered_from_results() -> None:
    """The README cannot run the docs hook, so it holds the hook's output verbatim: a rerun
    of a benchmark that changes a number fails here until the README is updated."""
    sys.path.insert(0, str(REPO / "docs" / "_hooks"))
    try:
        import results
    finally:
        sys.path.pop(0)
    assert results.model_table() in README.read_text(encoding="utf-8")


def test_every_results_marker_has_a_renderer() -> None:
    sys.path.insert(0, str(REPO / "docs" / "_hooks"))
    try:
        import results
    finally:
        sys.path.pop(0)
    for page in (REPO / "docs").rglob("*.md"):
        rendered = results.render_markers(page.read_text(encoding="utf-8"), str(page))
        assert "<!-- results:" not in rendered
    with pytest.raises(KeyError, match="no results renderer"):
        results.render_markers("<!-- results: no_such_table -->", "x.md")


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    missing = _docs_tools_missing()
    if missing:
        pytest.skip(f"{missing} is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    # Rendered, not left as markers: generated tables and references are in the pages.
    benchmarks = (site / "benchmarks.html").read_text(encoding="utf-8")
    assert "<!-- results" not in benchmarks and "serve_load.json" in benchmarks
    assert "crossmodal-train-heads" in (site / "reference" / "cli.html").read_text("utf-8")
    assert "/api/search/text" in (site / "reference" / "http.html").read_text("utf-8")
    assert "search_text" in (site / "reference" / "python.html").read_text("utf-8")
    # Offline: no page loads a stylesheet, script, font or image from another host.
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        remote = re.findall(r"<(?:script|img|link)[^>]+(?:src|href)=\"(?:https?:)?//[^\"]+",
                            html)
        remote = [tag for tag in remote if "rel=\"canonical\"" not in tag]
        assert not remote, f"{page.relative_to(site)} loads {remote[:3]}"
