"""Dataset readers: each format's counts, positives, skipped records and error messages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crossmodal.data.albef import load_albef
from crossmodal.data.chinese_clip import load_chinese_clip
from crossmodal.data.coco import load_coco_captions
from crossmodal.data.images import load_image
from crossmodal.data.karpathy import load_karpathy
from crossmodal.data.newsimages import article_text, load_newsimages
from crossmodal.data.registry import load_dataset
from crossmodal.data.table import load_table
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


def raises_at(where: str, *words: str):
    """pytest.raises for a BadInputError whose message holds `where` and then the words."""
    pattern = re.escape(where) + ".*" + ".*".join(re.escape(w) for w in words)
    return pytest.raises(BadInputError, match=pattern)


def pairs(data) -> list[tuple[str, tuple[str, ...]]]:
    """(text, ids of its positive images) per text: what a reader means, row numbers aside."""
    return [(text, tuple(data.image_ids[r] for r in rows))
            for text, rows in zip(data.texts, data.text_images, strict=True)]


def skipped_why(data) -> list[str]:
    return [why for _, why in data.skipped]


# -- Karpathy -------------------------------------------------------------------------------

def test_karpathy_flickr_split_dedup_and_skips(tmp_path):
    images = tmp_path / "images"
    write_image(images / "1000.jpg", RED)
    write_image(images / "2000.jpg", GREEN)
    path = dump(tmp_path / "dataset_flickr8k.json", {"dataset": "flickr8k", "images": [
        karpathy_entry("1000.jpg", "test", "A red  square .\n", "   "),
        karpathy_entry("2000.jpg", "train", "green"),
        karpathy_entry("3000.jpg", "test", "not on disk"),
        karpathy_entry("1000.jpg", "test", "red again"),  # listed twice: one image row
        karpathy_entry("2000.jpg", "test"),  # no sentences
    ]})
    data = load_karpathy(path, images, "test")
    assert data.name == "karpathy/flickr8k/test"
    assert data.image_ids == ["1000"]
    assert data.images == [(images / "1000.jpg").resolve()]
    assert pairs(data) == [("A red square .", ("1000",)), ("red again", ("1000",))]
    assert data.text_ids == ["80", "80"]
    assert sorted(skipped_why(data)) == [
        "empty caption", f"image file missing: {(images / '3000.jpg').resolve()}", "no captions"]
    assert any("images[0].sentences[1]" in what for what, _ in data.skipped)
    assert load_karpathy(path, images, "train").image_ids == ["2000"]


def test_karpathy_coco_filepath_cocoid_and_restval(tmp_path):
    write_image(tmp_path / "val2014" / "COCO_val2014_1.jpg", RED)
    write_image(tmp_path / "val2014" / "COCO_val2014_2.jpg", GREEN)
    write_image(tmp_path / "train2014" / "COCO_train2014_3.jpg", BLUE)
    path = dump(tmp_path / "dataset_coco.json", {"images": [
        karpathy_entry("COCO_val2014_1.jpg", "test", "red", filepath="val2014", cocoid=1),
        karpathy_entry("COCO_val2014_2.jpg", "restval", "green", filepath="val2014", cocoid=2),
        karpathy_entry("COCO_train2014_3.jpg", "train", "blue", filepath="train2014", cocoid=3),
    ]})
    assert load_karpathy(path, tmp_path, "train").image_ids == ["3"]
    data = load_karpathy(path, tmp_path, "train+restval")
    assert data.image_ids == ["2", "3"]
    assert data.images[0] == (tmp_path / "val2014" / "COCO_val2014_2.jpg").resolve()
    assert pairs(data) == [("green", ("2",)), ("blue", ("3",))]
    with pytest.raises(BadInputError, match="unknown Karpathy split dev .*restval"):
        load_karpathy(path, tmp_path, "dev")


@pytest.mark.parametrize("entry,where,words", [
    ({"split": "test", "sentences": []}, "images[1]", ["'filename'", "a string", "nothing"]),
    ({"filename": "a.jpg", "split": "test", "sentences": "a dog"}, "images[1]",
     ["'sentences'", "a list"]),
    ({"filename": "a.jpg", "split": "test", "sentences": [{"tokens": []}]},
     "images[1].sentences[0]", ["'raw'"]),
    ("a.jpg", "images[1]", ["expected an object"]),
])
def test_karpathy_malformed_entries_name_file_and_entry(tmp_path, entry, where, words):
    path = dump(tmp_path / "k.json", {"images": [karpathy_entry("a.jpg", "test", "x"), entry]})
    with raises_at(f"{path}: {where}", *words):
        load_karpathy(path, tmp_path)


def test_karpathy_bad_json_and_shape(tmp_path):
    bad = lines(tmp_path / "bad.json", "{", '  "images": [,]', "}")
    with raises_at(f"{bad}:2", "invalid JSON"):
        load_karpathy(bad, tmp_path)
    with raises_at(str(dump(tmp_path / "list.json", [])), "'images' list"):
        load_karpathy(tmp_path / "list.json", tmp_path)
    with pytest.raises(BadInputError, match="not found"):
        load_karpathy(tmp_path / "nowhere.json", tmp_path)


# -- ALBEF ----------------------------------------------------------------------------------

def test_albef_train_and_test_styles(tmp_path):
    write_image(tmp_path / "imgs" / "a.jpg", RED)
    write_image(tmp_path / "imgs" / "b.jpg", GREEN)
    path = dump(tmp_path / "flickr30k_test.json", [
        {"image": "imgs/a.jpg", "caption": ["red one", " ", "red two"]},
        {"image_path": "imgs/b.jpg", "caption": "green one", "image_id": 7},
        {"image": "imgs/b.jpg", "caption": "green two", "image_id": "7"},  # same image again
        {"image": "imgs/gone.jpg", "caption": "missing"},
        {"image": "imgs/./a.jpg", "caption": "red three"},  # same file, spelt differently
        {"image": "imgs/b.jpg", "caption": ""},
    ])
    data = load_albef(path, tmp_path)
    assert data.name == "albef/flickr30k_test"
    assert data.image_ids == ["imgs/a.jpg", "7"]
    assert pairs(data) == [("red one", ("imgs/a.jpg",)), ("red two", ("imgs/a.jpg",)),
                           ("green one", ("7",)), ("green two", ("7",)),
                           ("red three", ("imgs/a.jpg",))]
    assert data.text_ids[:2] == ["imgs/a.jpg#0", "imgs/a.jpg#1"]
    assert data.text_ids[-1] == "imgs/a.jpg#2"
    assert skipped_why(data).count("empty caption") == 2
    assert [what for what, why in data.skipped if "missing" in why] == [f"{path}: entry 3"]


@pytest.mark.parametrize("entry,words", [
    ({"caption": "x"}, ["'image'", "a string"]),
    ({"image": "a.jpg", "caption": 3}, ["'caption'", "a string or a list"]),
    ({"image": "a.jpg", "caption": ["ok", None]}, ["list of strings", "position 1"]),
    ({"image": "a.jpg", "caption": "x", "image_id": [1]}, ["'image_id'"]),
])
def test_albef_malformed_entries(tmp_path, entry, words):
    path = dump(tmp_path / "a.json", [{"image": "a.jpg", "caption": "fine"}, entry])
    with raises_at(f"{path}: entry 1", *words):
        load_albef(path, tmp_path)
    with raises_at(str(dump(tmp_path / "obj.json", {"images": []})), "JSON list"):
        load_albef(tmp_path / "obj.json", tmp_path)


def test_albef_one_id_for_two_files_is_an_error(tmp_path):
    write_image(tmp_path / "a.jpg", RED)
    write_image(tmp_path / "b.jpg", GREEN)
    path = dump(tmp_path / "a.json", [{"image": "a.jpg", "caption": "x", "image_id": 1},
                                      {"image": "b.jpg", "caption": "y", "image_id": 1}])
    with raises_at(f"{path}: entry 1", "image id '1'"):
        load_albef(path, tmp_path)


# -- Chinese-CLIP ---------------------------------------------------------------------------

def test_chinese_clip_texts_images_and_skips(tmp_path):
    folder = chinese_clip_folder(tmp_path, [
        {"text_id": 1, "text": "红色 方块", "image_ids": [101]},
        {"text_id": 2, "text": "红色或绿色", "image_ids": [101, "102"]},
        {"text_id": 3, "text": "不在图库", "image_ids": [101, 999]},
        {"text_id": 4, "text": "  ", "image_ids": [103]},
        {"text_id": 5, "text": "没有图片"},
    ])
    data = load_chinese_clip(folder, "valid")
    assert data.name == "chinese-clip/muge/valid"
    assert data.image_ids == ["101", "102", "103"]  # every TSV image, texts or not
    assert all(isinstance(image, bytes) for image in data.images)
    assert load_image(data.images[1]).getpixel((0, 0)) == GREEN
    assert pairs(data) == [("红色 方块", ("101",)), ("红色或绿色", ("101", "102"))]
    assert data.text_ids == ["1", "2"]
    texts = folder / "valid_texts.jsonl"
    assert data.skipped == [(f"{texts}:3", "image ids not in valid_imgs.tsv: 999"),
                            (f"{texts}:4", "empty caption"), (f"{texts}:5", "no image_ids")]


@pytest.mark.parametrize("tsv,line,words", [
    (["101\tAAAA", "102"], 2, ["'IMAGE_ID<TAB>BASE64'", "1 field"]),
    (["101\tAAAA", "102\tnot base64!"], 2, ["base64"]),
    (["101\tAAAA", "\tAAAA"], 2, ["'IMAGE_ID<TAB>BASE64'"]),
    (["101\tAAAA", "", "101\tBBBB"], 3, ["repeats line 1", "different image data"]),
])
def test_chinese_clip_malformed_tsv(tmp_path, tsv, line, words):
    folder = chinese_clip_folder(tmp_path, [], tsv)
    with raises_at(f"{folder / 'valid_imgs.tsv'}:{line}", *words):
        load_chinese_clip(folder, "valid")


@pytest.mark.parametrize("bad,words", [
    ("{not json", ["invalid JSON"]),
    ({"text": "x", "image_ids": [101]}, ["'text_id'"]),
    ({"text_id": 1, "text": 5, "image_ids": [101]}, ["'text'", "a string"]),
    ({"text_id": 1, "text": "x", "image_ids": 101}, ["'image_ids'", "a list"]),
    ({"text_id": 1, "text": "x", "image_ids": [[101]]}, ["'image_ids'", "list of integers"]),
])
def test_chinese_clip_malformed_texts(tmp_path, bad, words):
    folder = chinese_clip_folder(tmp_path, [{"text_id": 1, "text": "x", "image_ids": [101]}, bad])
    with raises_at(f"{folder / 'valid_texts.jsonl'}:2", *words):
        load_chinese_clip(folder, "valid")
    with pytest.raises(BadInputError, match="'test' texts not found"):
        load_chinese_clip(folder, "test")


# -- COCO captions --------------------------------------------------------------------------

def test_coco_captions(tmp_path):
    write_image(tmp_path / "val2014" / "a.jpg", RED)
    write_image(tmp_path / "val2014" / "b.jpg", GREEN)
    path = dump(tmp_path / "captions_val2014.json", {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"},
                   {"id": 3, "file_name": "gone.jpg"}, {"id": 4, "file_name": "b.jpg"},
                   {"id": 5, "file_name": "b.jpg"}, {"id": 1, "file_name": "a.jpg"}],
        "annotations": [
            {"image_id": 2, "caption": "green\n", "id": 20},
            {"image_id": 1, "caption": "red", "id": 10},
            {"image_id": 1, "caption": "crimson"},
            {"image_id": 3, "caption": "missing file", "id": 30},
            {"image_id": 4, "caption": "also green", "id": 40},  # same file as id 2
            {"image_id": 9, "caption": "no such image", "id": 90},
            {"image_id": 2, "caption": " ", "id": 21},
        ]})
    data = load_coco_captions(path, tmp_path / "val2014")
    assert data.name == "coco/captions_val2014"
    assert data.image_ids == ["1", "2"]
    assert pairs(data) == [("red", ("1",)), ("crimson", ("1",)), ("green", ("2",)),
                           ("also green", ("2",))]
    assert data.text_ids == ["10", "1#1", "20", "40"]
    assert sorted(skipped_why(data)) == [
        "empty caption", f"image file missing: {(tmp_path / 'val2014' / 'gone.jpg').resolve()}",
        "image id 9 is not in 'images'", "no captions"]


@pytest.mark.parametrize("data,where,words", [
    ({"images": [{"id": 1}], "annotations": []}, "images[0]", ["'file_name'"]),
    ({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}],
      "annotations": []}, "images[1]", ["image id 1", "another file_name"]),
    ({"images": [], "annotations": [{"image_id": 1}]}, "annotations[0]", ["'caption'"]),
    ({"images": [], "annotations": [{"image_id": 1.5, "caption": "x"}]}, "annotations[0]",
     ["'image_id'", "an integer"]),
    ({"images": []}, "", ["'annotations' to be a list"]),
])
def test_coco_malformed(tmp_path, data, where, words):
    path = dump(tmp_path / "c.json", data)
    with raises_at(f"{path}: {where}", *words):
        load_coco_captions(path, tmp_path)


# -- tables ---------------------------------------------------------------------------------

def test_table_csv_several_rows_per_image(tmp_path):
    write_image(tmp_path / "pics" / "a.jpg", RED)
    write_image(tmp_path / "pics" / "b.png", GREEN)
    path = lines(tmp_path / "caps.csv", "image,caption,extra", 'pics/a.jpg,"red, square",1',
                 "pics/b.png,green,2", "", 'pics/a.jpg,"a red\nthing",3', "pics/gone.jpg,x,4")
    data = load_table(path)
    assert data.name == "table/caps"
    assert data.image_ids == ["pics/a.jpg", "pics/b.png"]
    assert data.images[0] == (tmp_path / "pics" / "a.jpg").resolve()
    assert pairs(data) == [("red, square", ("pics/a.jpg",)), ("green", ("pics/b.png",)),
                           ("a red thing", ("pics/a.jpg",))]
    assert data.text_ids == ["pics/a.jpg#0", "pics/b.png#0", "pics/a.jpg#1"]
    assert data.skipped == [(f"{path}:7", f"image file missing: "
                             f"{(tmp_path / 'pics' / 'gone.jpg').resolve()}")]


def test_table_tsv_and_jsonl_with_columns_root_and_ids(tmp_path):
    root = tmp_path / "root"
    write_image(root / "a.jpg", RED)
    tsv = lines(tmp_path / "t" / "caps.tsv", "file\ttext\tkey", "a.jpg\tred\tA",
                "a.jpg\tcrimson\tA")
    data = load_table(tsv, "file", "text", image_root=root, id_column="key")
    assert data.image_ids == ["A"]
    assert pairs(data) == [("red", ("A",)), ("crimson", ("A",))]
    jsonl = lines(tmp_path / "caps.jsonl", json.dumps({"image": "a.jpg", "caption": "red"}), "",
                  json.dumps({"image": str(root / "a.jpg"), "caption": "same file"}))
    data = load_table(jsonl, image_root=root)
    assert len(data) == 1 and len(data.texts) == 2


def test_table_rows_with_empty_captions_are_skipped_and_counted(tmp_path):
    write_image(tmp_path / "a.jpg", RED)
    path = lines(tmp_path / "t.csv", "image,caption", "a.jpg,", "a.jpg,red", 'a.jpg," "')
    data = load_table(path)
    assert data.texts == ["red"]
    assert data.skipped == [(f"{path}:2", "empty caption"), (f"{path}:4", "empty caption")]


@pytest.mark.parametrize("name,rows,where,words", [
    ("t.csv", ["image,caption", "a.jpg,ok", " ,x"], ":3", ["non-empty 'image'"]),
    ("t.csv", ["image,caption", "a.jpg,ok", "a.jpg,ok,extra"], ":3", ["2 fields", "got 3"]),
    ("t.csv", ["", "img,caption", "a.jpg,ok"], ":2", ["header with columns 'image'"]),
    ("t.csv", ["image,caption", 'a.jpg,"two\nlines"', "b.jpg"], ":4", ["2 fields", "got 1"]),
    ("t.tsv", ["image\tcaption", "a.jpg ok"], ":2", ["2 fields"]),
    ("t.jsonl", ['{"image": "a.jpg", "caption": "x"}', '{"image": "a.jpg"}'], ":2",
     ["missing 'caption'"]),
    ("t.jsonl", ['{"image": "a.jpg", "caption": ["x"]}'], ":1", ["'caption'", "a string"]),
    ("t.jsonl", ["[1, 2]"], ":1", ["expected an object"]),
    ("t.txt", ["a.jpg,x"], "", ["unknown table type '.txt'"]),
    ("t.csv", [], "", ["empty table"]),
])
def test_table_malformed(tmp_path, name, rows, where, words):
    path = lines(tmp_path / name, *rows)
    with raises_at(f"{path}{where}", *words):
        load_table(path)


# -- NewsImages -----------------------------------------------------------------------------

def test_newsimages_articles(tmp_path):
    images = tmp_path / "images"
    write_image(images / "i1.jpg", RED)
    write_image(images / "i2.png", GREEN)
    path = lines(tmp_path / "content2022.tsv", "aid\ttitle\ttext\tiid\turl",
                 "a1\tFlood in town\t Residents  fled.\ti1\thttp://x",
                 "a2\tWhat now?\tNobody knows.\ti2.png\t",
                 "a3\tSame photo\t\ti1\t",
                 "a4\tGone\tbody\ti9\t",
                 "a5\t \t \ti1\t",
                 "a6\tNo image\tbody\t\t")
    data = load_newsimages(path, images)
    assert data.name == "newsimages/content2022"
    assert data.image_ids == ["i1", "i2"]
    assert pairs(data) == [("Flood in town. Residents fled.", ("i1",)),
                           ("What now? Nobody knows.", ("i2",)), ("Same photo", ("i1",))]
    assert data.text_ids == ["a1", "a2", "a3"]
    assert data.skipped == [
        (f"{path}:5", f"image file missing: {(images / 'i9.jpg').resolve()}"),
        (f"{path}:6 (article a5)", "no text"), (f"{path}:7 (article a6)", "no image")]
    titles = load_newsimages(path, images, text_column=None)
    assert titles.texts[0] == "Flood in town"


def test_newsimages_column_names_and_errors(tmp_path):
    write_image(tmp_path / "x.jpg", BLUE)
    path = lines(tmp_path / "n.csv", "article_id,headline,image_name", "7,Sky,x.jpg")
    data = load_newsimages(path, tmp_path, article_column="article_id", title_column="headline",
                           text_column=None, image_column="image_name")
    assert pairs(data) == [("Sky", ("x",))] and data.text_ids == ["7"]
    with raises_at(f"{path}:1", "header with columns 'aid', 'title', 'iid', 'text'"):
        load_newsimages(path, tmp_path)
    assert article_text("  A  title ", "") == "A title"
    assert article_text("", "body\n text") == "body text"


# -- registry -------------------------------------------------------------------------------

def test_registry_dict_shorthand_and_config_files(tmp_path):
    root = flickr8k_cn_root(tmp_path)
    data = load_dataset(f"flickr8k-cn:{root}:test:zh")
    assert data.name == "flickr8k-cn/test/zh" and data.texts == ["红色方块", "红色"]
    assert load_dataset(f"flickr8k_cn:{root}::zh").name == "flickr8k-cn/val/zh"  # '' = default

    write_image(tmp_path / "imgs" / "a.jpg", RED)
    dump(tmp_path / "a.json", [{"image": "a.jpg", "caption": "red"}])
    spec = {"format": "albef", "path": str(tmp_path / "a.json"),
            "image_root": str(tmp_path / "imgs")}
    assert load_dataset(spec).texts == ["red"]

    configs = tmp_path / "configs"
    json_config = dump(configs / "ds.json", {**spec, "path": "../a.json", "image_root": "../imgs"})
    assert load_dataset(json_config).texts == ["red"]
    toml = configs / "ds.toml"
    toml.write_text('format = "table"\npath = "caps.csv"\n', encoding="utf-8")
    write_image(configs / "b.jpg", GREEN)
    lines(configs / "caps.csv", "image,caption", "b.jpg,green")
    assert load_dataset(str(toml)).texts == ["green"]


def test_flickr8k_cn_joins_languages_with_plus(tmp_path):
    root = flickr8k_cn_root(tmp_path)
    lines(root / "flickr8kenc.caption.txt", "100.jpg#enc#0 a red square")
    data = load_dataset(f"flickr8k-cn:{root}:test:zh+en")
    assert data.texts == ["红色方块", "红色", "a red square"]
    assert data.text_images == [(0,), (0,), (0,)] and len(data.image_texts()[0]) == 3
    with pytest.raises(BadInputError, match="language must be one of"):
        load_dataset(f"flickr8k-cn:{root}:test:zh+fr")


def test_flickr8k_cn_reads_the_machine_translated_chinese_captions(tmp_path):
    root = flickr8k_cn_root(tmp_path)
    lines(root / "flickr8kzhb.caption.txt", "100.jpg#zhb#0 一个红色的正方形")
    lines(root / "flickr8kzhg.caption.txt", "100.jpg#zhg#0 红色正方形")
    data = load_dataset(f"flickr8k-cn:{root}:test:zh+zhb+zhg")
    assert data.texts == ["红色方块", "红色", "一个红色的正方形", "红色正方形"]
    assert load_dataset(f"flickr8k-cn:{root}:test:zhg").texts == ["红色正方形"]


@pytest.mark.parametrize("spec,pattern", [
    ({"format": "laion", "path": "x"}, "unknown dataset format 'laion' .*karpathy.*newsimages"),
    ("laion:x", "unknown dataset format 'laion' .*karpathy"),
    ({"path": "x"}, "expected a 'format'"),
    ({"format": "karpathy", "path": "x"}, "missing image_root"),
    ({"format": "karpathy", "path": "x", "image_root": "y", "lang": "en"}, "unknown lang"),
    ({"format": "karpathy", "path": "x", "json_path": "x", "image_root": "y"}, "not both"),
    ({"format": "table", "path": 3}, "'path' to be a string"),
    ("flickr8k-cn:a:b:c:d", "at most 3 arguments"),
    ("just-a-name", "expected FORMAT:ARG"),
    ("missing.toml", "dataset config not found"),
    (Path("config.yaml"), "expected a .json or .toml config"),
])
def test_registry_bad_specs(tmp_path, spec, pattern):
    with pytest.raises(BadInputError, match=pattern):
        load_dataset(spec)


def test_registry_bad_config_files(tmp_path):
    bad = lines(tmp_path / "bad.toml", "format = ")
    with pytest.raises(BadInputError, match=re.escape(str(bad)) + ".*invalid TOML"):
        load_dataset(bad)
    listed = dump(tmp_path / "list.json", ["karpathy"])
    with pytest.raises(BadInputError, match="expected an object with 'format'"):
        load_dataset(listed)


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.jsonl"])
def test_table_not_utf8_names_file_and_line(tmp_path, name):
    rows = {"t.csv": "image,caption\na.jpg,red\na.jpg,une fillé\n",
            "t.tsv": "image\tcaption\na.jpg\tred\na.jpg\tune fillé\n",
            "t.jsonl": '{"image": "a.jpg", "caption": "red"}\n\n'
                       '{"image": "a.jpg", "caption": "une fillé"}\n'}[name]
    path = tmp_path / name
    path.write_bytes(rows.encode("latin-1"))
    with raises_at(f"{path}:3", "not UTF-8 text (byte 0xe9)", "save the file as UTF-8"):
        load_table(path)


def test_table_with_a_bom_and_old_mac_line_ends(tmp_path):
    write_image(tmp_path / "a.jpg", RED)
    path = tmp_path / "t.csv"
    path.write_bytes("\ufeffimage,caption\ra.jpg,red\r\na.jpg,\"two\rlines\"\ra.jpg,\n".encode())
    data = load_table(path)
    assert data.texts == ["red", "two lines"]
    assert data.skipped == [(f"{path}:5", "empty caption")]


def test_flickr8k_cn_caption_file_not_utf8(tmp_path):
    (tmp_path / "flickr8kval.txt").write_text("a\n", encoding="utf-8")
    (tmp_path / "flickr8kzhc.caption.txt").write_bytes("a.jpg#zhc#0 狗\n".encode()
                                                       + "a.jpg#zhc#1 café\n".encode("latin-1"))
    with raises_at(f"{tmp_path / 'flickr8kzhc.caption.txt'}:2", "not UTF-8 text (byte 0xe9)"):
        load_dataset(f"flickr8k-cn:{tmp_path}", split="val", language="zh")


def test_a_sample_draws_images_with_their_texts_reproducibly():
    from crossmodal.data.dataset import RetrievalDataset

    data = RetrievalDataset("toy")
    for i in range(50):
        row = data.add_image(f"img{i}", Path(f"img{i}.jpg"))
        for k in range(2):
            data.add_text(f"caption {k} of {i}", row)
    sample = data.sample(10, seed=3)
    assert len(sample) == 10 and len(sample.texts) == 20 and sample.name == "toy/sample10-seed3"
    assert sample.image_ids == data.sample(10, seed=3).image_ids  # reproducible
    assert sample.image_ids != data.sample(10, seed=4).image_ids
    assert sample.image_ids == sorted(sample.image_ids, key=lambda i: int(i[3:]))  # in order
    for text, rows in zip(sample.texts, sample.text_images, strict=True):
        assert text.endswith(f"of {sample.image_ids[rows[0]][3:]}")  # positives renumbered
    with pytest.raises(BadInputError, match="1 to 50"):
        data.sample(51, seed=0)
