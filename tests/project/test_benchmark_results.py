"""Every benchmark result file carries one envelope (how its numbers were made), and the
benchmark scripts write it through one helper."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import ENVELOPE_KEYS, begin_run, read_result, write_result  # noqa: E402

SCRIPTS = sorted([*REPO.glob("benchmarks/*/*.py"), *REPO.glob("tools/*.py")])


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_every_result_file_has_the_envelope(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) == {"envelope", "result"}, f"{path.name}: not in the envelope"
    envelope = data["envelope"]
    missing = [key for key in ENVELOPE_KEYS if key not in envelope]
    assert not missing, f"{path.name}: envelope lacks {missing}"
    assert set(envelope["load_average"]) == {"before", "after"}
    if envelope["cpu"] is None:  # a gap is said, never filled with a guess
        assert envelope.get("cpu_note"), f"{path.name}: no CPU and no note saying so"
    else:
        assert envelope["cpu"]["model"] and isinstance(envelope["cpu"]["flags"], list)
    for key in ("command", "git_commit", "date"):
        assert envelope[key] or envelope.get(f"{key}_note"), f"{path.name}: {key} unexplained"


def test_write_result_records_the_envelope(tmp_path: Path) -> None:
    envelope = begin_run()
    target = write_result(tmp_path / "x.json", {"rows": [1, 2]}, envelope)
    data = json.loads(target.read_text(encoding="utf-8"))
    assert read_result(target) == {"rows": [1, 2]}
    assert data["envelope"]["command"].startswith("python ")
    assert len(data["envelope"]["load_average"]["before"]) == 3
    assert len(data["envelope"]["load_average"]["after"]) == 3
    assert data["envelope"]["date"].endswith("Z")
    commit = data["envelope"]["git_commit"]
    assert (commit and len(commit) == 40) or data["envelope"]["git_commit_note"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_scripts_write_results_through_the_envelope(script: Path) -> None:
    """A script that writes into benchmarks/results does it with write_result."""
    text = script.read_text(encoding="utf-8")
    if "RESULTS" not in text or script.name == "migrate_result_envelopes.py":
        return
    assert "write_result(" in text and "begin_run()" in text, script.name
