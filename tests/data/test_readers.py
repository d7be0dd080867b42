"""The reader suite: every registered dataset format (data.registry.FORMATS) reads a small set
of its own through a config file, with paths relative to that file, into a consistent
RetrievalDataset; a missing file is one clear error. Each format's details are tested in
test_datasets.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from crossmodal.data.images import load_image
from crossmodal.data.registry import FORMATS, load_dataset
from crossmodal.errors import BadInputError
from tests.dataset_helpers import (
    BLUE,
    GREEN,
    RED,
    chinese_clip_folder,
    dump,
    flickr8k_cn_root,
    karpathy_entry,
    lines,
)
from tests.image_helpers import write_image


def _flickr8k_cn(folder: Path) -> dict:
    flickr8k_cn_root(folder)
    return {"root": "flickr8k-cn", "split": "test", "language": "zh"}


def _karpathy(folder: Path) -> dict:
    write_image(folder / "images" / "1.jpg", RED)
    write_image(folder / "images" / "2.jpg", GREEN)
    dump(folder / "dataset_flickr8k.json", {"dataset": "flickr8k", "images": [
        karpathy_entry("1.jpg", "test", "red", "a red square"),
        karpathy_entry("2.jpg", "test", "green")]})
    return {"path": "dataset_flickr8k.json", "image_root": "images"}


def _albef(folder: Path) -> dict:
    write_image(folder / "images" / "a.jpg", RED)
    write_image(folder / "images" / "b.jpg", GREEN)
    dump(folder / "test.json", [{"image": "a.jpg", "caption": ["red", "a red square"]},
                                {"image": "b.jpg", "caption": "green"}])
    return {"path": "test.json", "image_root": "images"}


def _chinese_clip(folder: Path) -> dict:
    chinese_clip_folder(folder, [{"text_id": 1, "text": "红色", "image_ids": [101]},
                                 {"text_id": 2, "text": "绿色", "image_ids": [102]}])
    return {"folder": "muge", "split": "valid"}


def _coco(folder: Path) -> dict:
    write_image(folder / "val2014" / "a.jpg", RED)
    write_image(folder / "val2014" / "b.jpg", GREEN)
    dump(folder / "captions_val2014.json", {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [{"image_id": 1, "caption": "red", "id": 10},
                        {"image_id": 2, "caption": "green", "id": 20}]})
    return {"path": "captions_val2014.json", "image_root": "val2014"}


def _table(folder: Path) -> dict:
    write_image(folder / "pics" / "a.jpg", RED)
    write_image(folder / "pics" / "b.png", GREEN)
    lines(folder / "caps.csv", "image,caption", "a.jpg,red", "b.png,green", "a.jpg,crimson")
    return {"path": "caps.csv", "image_root": "pics"}


def _newsimages(folder: Path) -> dict:
    write_image(folder / "images" / "i1.jpg", RED)
    write_image(folder / "images" / "i2.jpg", BLUE)
    lines(folder / "content.tsv", "aid\ttitle\ttext\tiid",
          "a1\tFlood\tResidents fled.\ti1", "a2\tSky\tBlue.\ti2")
    return {"path": "content.tsv", "image_root": "images"}


def _imagefolder(folder: Path) -> dict:
    for name, rgb in (("red", RED), ("green", GREEN)):
        write_image(folder / "classes" / name / "a.png", rgb)
    return {"root": "classes"}


def _captioned_folder(folder: Path) -> dict:
    write_image(folder / "photos" / "a.jpg", RED)
    write_image(folder / "photos" / "b.png", GREEN)
    lines(folder / "photos" / "a.txt", "red", "crimson")
    lines(folder / "photos" / "b.png.txt", "green")
    return {"root": "photos"}


# format -> writes a small set into a folder and returns its spec, paths relative to it
EXAMPLES: dict[str, Callable[[Path], dict]] = {
    "flickr8k-cn": _flickr8k_cn, "karpathy": _karpathy, "albef": _albef,
    "chinese-clip": _chinese_clip, "coco": _coco, "table": _table,
    "newsimages": _newsimages, "imagefolder": _imagefolder, "folder": _captioned_folder,
}


def test_every_registered_format_runs_the_suite():
    assert set(FORMATS) == set(EXAMPLES), "a format without an example in EXAMPLES"


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_format_reads_its_example_through_a_config_file(name, tmp_path):
    spec = {"format": name, **EXAMPLES[name](tmp_path)}
    config = dump(tmp_path / "configs" / f"{name}.json",
                  {k: f"../{v}" if k in FORMATS[name].path_params or k == "path" else v
                   for k, v in spec.items()})
    data = load_dataset(config)
    assert len(data.images) >= 1 and len(data.texts) >= 2
    assert len(data.image_ids) == len(set(data.image_ids)) == len(data.images)
    assert len(data.text_images) == len(data.texts)
    assert all(rows and all(0 <= r < len(data.images) for r in rows)
               for rows in data.text_images)
    assert all(text.strip() for text in data.texts) and not data.skipped
    assert load_image(data.images[0]).size[0] > 0
    assert load_dataset(spec | _absolute(spec, name, tmp_path)).texts == data.texts


def _absolute(spec: dict, name: str, folder: Path) -> dict:
    first = next(iter(FORMATS[name].path_params))
    return {key: str(folder / value) for key, value in spec.items()
            if key in FORMATS[name].path_params or (key == "path" and first != "path")}


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_format_refuses_a_missing_file_in_one_line(name, tmp_path):
    spec = {"format": name, **EXAMPLES[name](tmp_path)}
    spec = spec | _absolute(spec, name, tmp_path)
    first = next(iter(FORMATS[name].path_params))
    key = "path" if "path" in spec and first != "path" else first
    spec[key] = str(tmp_path / "gone")
    with pytest.raises(BadInputError) as caught:
        load_dataset(spec)
    assert "gone" in str(caught.value) and "\n" not in str(caught.value)
