from __future__ import annotations

import json

import pytest

from crossmodal.data.files import collect_items, read_caption_file
from crossmodal.errors import BadInputError
from tests.conftest import write_image


def test_folder_walk_with_sidecars(colour_folder):
    report = collect_items([colour_folder])
    by_id = {item.id: item for item in report.items}
    assert by_id["red.jpg"].captions == ["a red square", "red thing"]
    assert by_id["sub/blue.webp"].captions == ["deep blue sea"]
    assert by_id["nocaption.bmp"].captions == []
    assert report.empty_captions == 1
    assert not [s for s in report.skipped if "not an image" in s[1]]  # sidecars are not skipped


def test_single_file_and_missing_path(colour_folder, tmp_path):
    report = collect_items([colour_folder / "green.png"])
    assert [i.id for i in report.items] == ["green.png"]
    with pytest.raises(BadInputError, match="path not found"):
        collect_items([tmp_path / "nowhere"])


@pytest.mark.parametrize("name,content", [
    ("caps.tsv", "red.jpg\tcrimson block\ngreen.png\tlawn\n"),
    ("caps.txt", "red.jpg#0 crimson block\ngreen.png#enc#1 lawn\n"),
    ("caps.jsonl", '{"image": "red.jpg", "caption": "crimson block"}\n'
                   '{"image_path": "green", "text": "lawn"}\n'),
    ("caps.json", json.dumps([{"image": "red.jpg", "caption": "crimson block"},
                              {"image": "green.png", "caption": "lawn"}])),
    ("map.json", json.dumps({"red.jpg": ["crimson block"], "green.png": "lawn"})),
])
def test_caption_file_formats(colour_folder, tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    report = collect_items([colour_folder], [path])
    by_id = {item.id: item for item in report.items}
    assert by_id["red.jpg"].captions[-1] == "crimson block"
    assert by_id["green.png"].captions[-1] == "lawn"


@pytest.mark.parametrize("name,content,where", [
    ("bad.txt", "red.jpg crimson\n", "bad.txt:1"),
    ("bad.jsonl", '{"image": "a.jpg", "caption": "x"}\n{"image": 3}\n', "bad.jsonl:2"),
    ("bad.jsonl", '{"image": "a.jpg", "caption": "x"}\n{oops\n', "bad.jsonl:2"),
    ("bad.json", '[{"image": "a.jpg"', "bad.json:1"),
])
def test_malformed_caption_files_name_file_and_line(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BadInputError, match=where.replace(".", r"\.")):
        read_caption_file(path)


def test_duplicate_ids_from_two_roots_are_skipped(tmp_path):
    write_image(tmp_path / "a" / "x.png", (1, 1, 1))
    write_image(tmp_path / "b" / "x.png", (2, 2, 2))
    report = collect_items([tmp_path / "a", tmp_path / "b"])
    assert len(report.items) == 1
    assert "duplicate id 'x.png'" in report.skipped[0][1]
