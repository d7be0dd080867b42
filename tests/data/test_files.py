from __future__ import annotations

import json
import os

import pytest

from crossmodal.data.files import collect_items, read_caption_file
from crossmodal.errors import BadInputError
from tests.image_helpers import write_image


def test_folder_walk_with_sidecars(colour_folder):
    report = collect_items([colour_folder])
    by_id = {item.id: item for item in report.items}
    assert by_id["red.jpg"].captions == ["a red square", "red thing"]
    assert by_id["sub/blue.webp"].captions == ["deep blue sea"]
    assert by_id["nocaption.bmp"].captions == []
    assert report.empty_captions == 1
    assert not [s for s in report.skipped_files if "not an image" in s[1]]  # nor sidecars


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
    assert "duplicate id 'x.png'" in report.skipped_files[0][1]


@pytest.mark.parametrize("name,content", [
    ("caps.tsv", "red.jpg\tcrimson\ngreen.png\tune fillé\n"),
    ("caps.jsonl", '{"image": "red.jpg", "caption": "crimson"}\n'
                   '{"image": "green.png", "caption": "une fillé"}\n'),
    ("caps.json", '[{"image": "red.jpg", "caption": "crimson"},\n'
                  '{"image": "green.png", "caption": "une fillé"}]'),
])
def test_caption_file_not_utf8_names_file_and_line(tmp_path, name, content, monkeypatch):
    (tmp_path / name).write_bytes(content.encode("latin-1"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError) as error:
        read_caption_file(name)
    assert str(error.value) == (f"{tmp_path / name}:2: not UTF-8 text (byte 0xe9): save the "
                                f"file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {name} > new.txt`")


def test_latin1_sidecar_is_skipped_not_garbled(colour_folder):
    sidecar = colour_folder / "green.txt"
    sidecar.write_bytes("green field\nune fillé\n".encode("latin-1"))
    report = collect_items([colour_folder])
    by_id = {item.id: item for item in report.items}
    assert by_id["green.png"].captions == []  # indexed, without the undecodable captions
    assert (str(sidecar), "not UTF-8 text (line 2, byte 0xe9): its captions were left out; "
            "save it as UTF-8") in report.skipped_files


def test_skips_are_reported_as_files_and_captions_with_absolute_paths(
        colour_folder, tmp_path, monkeypatch):
    (colour_folder / "green.txt").write_bytes(b"")  # a 0-byte sidecar
    (colour_folder / "red.txt").write_text("  \n\t\n", encoding="utf-8")  # blank lines only
    (colour_folder / "notes.md").write_text("x", encoding="utf-8")
    captions = tmp_path / "caps.tsv"
    captions.write_text("red.jpg\t \nmissing.jpg\ta cat\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    report = collect_items([os.path.relpath(colour_folder)], ["caps.tsv"])
    files = dict(report.skipped_files)
    no_captions = "caption file with no captions (empty or blank lines)"
    assert files[str(colour_folder / "green.txt")] == no_captions
    assert files[str(colour_folder / "red.txt")] == no_captions
    assert files[str(colour_folder / "notes.md")] == "not an image file"
    assert report.skipped_captions == [
        (f"{captions}:1", "empty caption"),  # red.jpg, walked before sub/
        (f"{colour_folder / 'sub' / 'blue.webp.txt'}:2", "empty caption"),
        (f"{captions}:2", "no image 'missing.jpg' among the inputs"),
    ]
    assert report.empty_captions == 2


def test_symlinked_folders_are_followed_once(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_image(root / "real" / "a.png", (1, 1, 1))
    write_image(outside / "b.png", (2, 2, 2))
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "again").symlink_to(root / "real", target_is_directory=True)  # a second name
    (root / "real" / "loop").symlink_to(root, target_is_directory=True)  # a loop
    (root / "twice").symlink_to(outside, target_is_directory=True)
    report = collect_items([root])
    assert sorted(item.id for item in report.items) == ["linked/b.png", "real/a.png"]
    skipped = {os.path.basename(what): why for what, why in report.skipped_files}
    assert set(skipped) == {"again", "loop", "twice"}
    assert skipped["again"] == f"folder already walked ({root / 'real'}): not walked again"


def test_a_folder_reached_through_two_links_is_walked_once(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_image(outside / "sub" / "b.png", (2, 2, 2))
    (root / "a_sub").parent.mkdir()
    (root / "a_sub").symlink_to(outside / "sub", target_is_directory=True)
    (root / "b_all").symlink_to(outside, target_is_directory=True)
    report = collect_items([root])
    assert [item.id for item in report.items] == ["a_sub/b.png"]
    assert report.skipped_files == [(str(root / "b_all" / "sub"),
                                     f"folder already walked ({outside / 'sub'}): not walked "
                                     "again")]


def test_unreadable_folder_is_reported(tmp_path, monkeypatch):
    write_image(tmp_path / "ok" / "a.png", (1, 1, 1))
    write_image(tmp_path / "locked" / "b.png", (2, 2, 2))
    real_scandir = os.scandir

    def scandir(path="."):  # chmod 000 does not stop root, who runs these tests in CI
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = collect_items([tmp_path])
    assert [item.id for item in report.items] == ["ok/a.png"]
    assert report.skipped_files == [(str(tmp_path / "locked"),
                                     "cannot read folder: Permission denied")]
