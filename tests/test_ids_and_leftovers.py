"""Ids made from file names follow the API's rule; leftover files of killed writers go."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.data.files import collect_items
from crossmodal.engine import Collection
from crossmodal.item_ids import normal_item_id
from tests.image_helpers import write_image

# Names a file system takes but no id lookup can name: the API and `remove` strip or refuse.
UNADDRESSABLE = ["new\nline.jpg", "tab\tx.jpg", " lead.jpg", " dir/in.jpg"]


def _invoke(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output + str(result.exception)
    return result


@pytest.fixture
def odd_names(tmp_path):
    root = tmp_path / "photos"
    for number, name in enumerate([*UNADDRESSABLE, "ok.jpg", "sub/in space.jpg"]):
        write_image(root / name, (20 * number, 10, 10))
    return root


def test_files_an_id_cannot_name_are_skipped_with_the_reason(odd_names):
    report = collect_items([odd_names])
    assert sorted(item.id for item in report.items) == ["ok.jpg", "sub/in space.jpg"]
    skipped = {os.path.relpath(path, odd_names): why for path, why in report.skipped_files}
    assert sorted(skipped) == sorted(UNADDRESSABLE)
    assert "control character" in skipped["new\nline.jpg"]
    assert "control character" in skipped["tab\tx.jpg"]
    assert "'lead.jpg'" in skipped[" lead.jpg"] and "rename the file" in skipped[" lead.jpg"]
    # A single file given by name follows the same rule.
    assert collect_items([odd_names / " lead.jpg"]).items == []


def test_every_id_the_cli_indexes_can_be_removed(tmp_path, odd_names, fake_encoder):
    index = tmp_path / "idx"
    result = _invoke("index", odd_names, "--into", index, "--model", "fake:colours", "--quiet")
    assert "indexed 2 new" in result.stdout
    assert f"skipped {len(UNADDRESSABLE)} files:" in result.stderr
    assert ascii(str(odd_names / "new\nline.jpg")) in result.stderr  # one line per skip
    ids = [item["id"] for item in Collection.open(index).items]
    assert all(normal_item_id(item_id) == item_id for item_id in ids)
    assert "removed 2 items; 0 remain" in _invoke("remove", index, *ids).stdout
