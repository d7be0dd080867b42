"""Text read in photos: kept as captions of source "ocr", and found by a text query."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from crossmodal.collection.collection import Collection
from crossmodal.collection.ocr_ingest import file_captions
from crossmodal.collection.ocr_search import OCR_MATCH
from crossmodal.data.ocr import TextReader, join_lines
from tests.image_helpers import write_image
from tests.ocr_helpers import needs_real_ocr, write_sign

# What the fake reader "reads", by the photo's width (the tests' photos differ in width).
SIGNS = {40: ["ZEBRA CROSSING"], 41: ["北京西站出口"], 42: []}


class FakeReader:
    """Reads the text SIGNS gives for the photo's width; a 43 px photo breaks it."""

    def __init__(self):
        self.read = 0

    def captions(self, image: Image.Image) -> list[str]:
        self.read += 1
        if image.width == 43:
            raise RuntimeError("the detector gave up")
        return SIGNS[image.width]


@pytest.fixture
def signs(tmp_path):
    root = tmp_path / "photos"
    write_image(root / "crossing.jpg", (200, 30, 30), size=(40, 24))
    (root / "crossing.txt").write_text("a red street\n", encoding="utf-8")
    write_image(root / "station.jpg", (30, 200, 30), size=(41, 24))
    write_image(root / "plain.jpg", (30, 30, 200), size=(42, 24))
    return root


def test_read_text_becomes_ocr_captions_and_a_text_query_finds_the_photo(tmp_path, signs,
                                                                          fake_encoder):
    collection = Collection.create(tmp_path / "idx", model="fake:colours")
    report = collection.add_paths([signs], progress=False, ocr=FakeReader())
    assert (report.ocr_read, report.ocr_found) == (3, 2)
    crossing = collection.item("crossing.jpg")
    assert crossing["captions"] == ["a red street", "ZEBRA CROSSING"]
    assert crossing["caption_sources"] == ["file", "ocr"]
    assert file_captions(crossing) == ["a red street"]
    plain = collection.item("plain.jpg")  # read, nothing found: no ocr caption
    assert plain["captions"] == [] and plain["ocr"] is True and "caption_sources" not in plain

    # Neither photo is found by its colour: only the read text can place it first.
    for query, photo in (("zebra crossing", "crossing.jpg"), ("北京西站出口", "station.jpg")):
        hits = collection.search_text(query, k=3)
        assert hits[0].id == photo and hits[0].kind == "image"
        assert hits[0].score >= OCR_MATCH and hits[0].text
        assert len({h.id for h in hits}) == 3  # the photo is not listed twice
    # A query about the photos, not their text, is ranked by the image vectors as before.
    assert collection.search_text("blue", k=1)[0].id == "plain.jpg"
    assert collection.search_text("blue", k=1)[0].text is None

    # The caption rows say where they came from, and filters see it.
    texts = collection.search_text("crossing", k=5, target="texts",
                                   where='caption_source = "ocr"')
    assert {h.id for h in texts} == {"crossing.jpg#1", "station.jpg#0"}
    # ...and the photo's text route honours the search's filter.
    assert collection.search_text("zebra crossing", k=1, where='folder = "x"') == []

    reopened = Collection.open(tmp_path / "idx")  # kept through a commit and a reload
    assert reopened.search_text("北京西站出口", k=1)[0].id == "station.jpg"


def test_indexing_again_reads_only_what_was_not_read(tmp_path, signs, fake_encoder):
    collection = Collection.create(tmp_path / "idx", model="fake:colours")
    collection.add_paths([signs], progress=False)
    assert collection.search_text("zebra crossing", k=1)[0].text is None

    reader = FakeReader()
    report = collection.add_paths([signs], progress=False, ocr=reader)  # was indexed without
    assert (report.updated, report.ocr_read, reader.read) == (3, 3, 3)
    assert collection.search_text("zebra crossing", k=1)[0].id == "crossing.jpg"

    again = collection.add_paths([signs], progress=False, ocr=reader)
    assert (again.unchanged, reader.read) == (3, 3)  # read once: nothing read again
    without = collection.add_paths([signs], progress=False)  # read text is kept
    assert without.unchanged == 3
    assert collection.item("crossing.jpg")["caption_sources"] == ["file", "ocr"]


def test_a_photo_the_reader_fails_on_is_indexed_without_text_and_reported(tmp_path, signs,
                                                                         fake_encoder):
    write_image(signs / "broken.jpg", (90, 90, 90), size=(43, 24))
    collection = Collection.create(tmp_path / "idx", model="fake:colours")
    report = collection.add_paths([signs], progress=False, ocr=FakeReader())
    assert report.added == 4 and report.ocr_read == 3
    assert [(p.rsplit("/", 1)[-1], why) for p, why in report.skipped_ocr] == [
        ("broken.jpg", "cannot read text: the detector gave up")]
    assert "ocr" not in collection.item("broken.jpg")  # read again next time
    log = json.loads(report.log_path.read_text(encoding="utf-8"))
    assert log["text_not_read"][0]["reason"] == "cannot read text: the detector gave up"


def test_long_text_is_cut_into_captions_at_line_ends():
    lines = ["MENU", "noodles 12", "x" * 150, "dumplings 9", "tea 3"]
    assert join_lines(lines, limit=40) == ["MENU noodles 12", "x" * 150, "dumplings 9 tea 3"]
    assert join_lines([]) == []


def test_real_ocr_reads_english_and_chinese_signs_and_search_finds_them(tmp_path,
                                                                       fake_encoder):
    font = needs_real_ocr()
    photos = tmp_path / "photos"
    write_sign(photos / "coffee.jpg", "FRESH COFFEE", font)
    write_sign(photos / "station.jpg", "北京西站出口", font, background=(200, 230, 250))
    write_image(photos / "blank.jpg", (250, 250, 240), size=(640, 360))
    collection = Collection.create(tmp_path / "idx", model="fake:colours")
    report = collection.add_paths([photos], progress=False, ocr=TextReader())
    assert (report.ocr_read, report.ocr_found, report.skipped_ocr) == (3, 2, [])
    assert collection.item("coffee.jpg")["captions"] == ["FRESH COFFEE"]
    assert collection.item("station.jpg")["captions"] == ["北京西站出口"]
    assert collection.item("blank.jpg")["captions"] == []
    assert collection.search_text("fresh coffee", k=1)[0].id == "coffee.jpg"
    assert collection.search_text("北京西站出口", k=1)[0].id == "station.jpg"


def test_the_progress_bar_counts_photos_as_their_text_is_read(tmp_path, signs, fake_encoder,
                                                              capsys):
    (signs / "not-a-photo.jpg").write_bytes(b"not a jpeg")  # counted too, as skipped
    collection = Collection.create(tmp_path / "idx", model="fake:colours")
    collection.add_paths([signs], progress=True, ocr=FakeReader())
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any(line.startswith("reading text, embedding: 100%") and "4/4" in line
               for line in bar), bar
    assert any("0/4" in line for line in bar)  # shown before the first photo is read
