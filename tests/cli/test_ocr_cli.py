"""`crossmodal index --ocr`: the flag, its report, and one line without the extra."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.data import ocr
from tests.collection.test_ocr import FakeReader
from tests.image_helpers import write_image


def run(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output + str(result.exception)
    return result.output


@pytest.fixture
def photos(tmp_path):
    write_image(tmp_path / "photos" / "crossing.jpg", (200, 30, 30), size=(40, 24))
    write_image(tmp_path / "photos" / "plain.jpg", (30, 30, 200), size=(42, 24))
    return tmp_path / "photos"


def test_index_ocr_reports_what_was_read_and_search_shows_it(tmp_path, photos, fake_encoder,
                                                            monkeypatch):
    monkeypatch.setattr(ocr, "TextReader", FakeReader)
    index = tmp_path / "idx"
    out = run("index", photos, "--into", index, "--model", "fake:colours", "--ocr", "--quiet")
    assert "read text in 1 of 2 photos" in out
    assert "(1 captions)" in out
    shown = run("search", index, "zebra crossing", "--k", "1")
    assert "crossing.jpg" in shown and "(reads: ZEBRA CROSSING)" in shown
    hits = json.loads(run("search", index, "zebra crossing", "--k", "1", "--json"))
    assert hits[0]["text"] == "ZEBRA CROSSING" and hits[0]["kind"] == "image"


def test_ocr_without_the_extra_is_one_line_naming_the_install(tmp_path, photos, fake_encoder,
                                                               monkeypatch):
    monkeypatch.setattr(ocr, "ocr_available", lambda: False)
    out = run("index", photos, "--into", tmp_path / "idx", "--model", "fake:colours", "--ocr",
              code=2)
    assert out.strip().splitlines() == [
        "error: --ocr needs the OCR models: pip install 'crossmodal[ocr]'"]
    assert not (tmp_path / "idx").exists()  # checked before anything is made
