"""`serve --ocr`: the text in an uploaded photo is read and found by a text query."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

from crossmodal.serve import ServeSettings, app, create_app  # noqa: E402
from tests.collection.test_ocr import FakeReader  # noqa: E402
from tests.serve_helpers import build_index, local_client, png_bytes  # noqa: E402


@pytest.mark.parametrize("reads", [True, False])
def test_uploads_are_read_only_when_the_server_reads_text(tmp_path, colour_folder, fake_encoder,
                                                          monkeypatch, reads):
    monkeypatch.setattr(app, "TextReader", FakeReader)
    index = build_index(tmp_path, colour_folder, fake_encoder)
    client = local_client(create_app(index, ServeSettings(ocr=reads), encoder=fake_encoder))
    sign = {"file": ("s.png", png_bytes((240, 240, 0), size=(40, 24)), "image/png")}
    added = client.post("/api/items", files=sign, data={"captions": "yellow", "id": "sign.png"})
    assert added.status_code == 201, added.text
    assert added.json()["captions"] == (["yellow", "ZEBRA CROSSING"] if reads else ["yellow"])
    found = client.post("/api/search/text", json={"query": "zebra crossing", "k": 1}).json()
    assert (found["hits"][0]["id"] == "sign.png") is reads

    broken = {"file": ("b.png", png_bytes((9, 9, 9), size=(43, 24)), "image/png")}
    kept = client.post("/api/items", files=broken, data={"id": "broken.png"})
    assert kept.status_code == 201 and kept.json()["captions"] == []  # added, without text
