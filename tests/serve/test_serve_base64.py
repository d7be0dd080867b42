"""Images as base64 in JSON bodies: search by image, add an item; the upload rules hold."""

from __future__ import annotations

import base64

import pytest

from crossmodal.serve.app import create_app
from crossmodal.serve.settings import ServeSettings
from tests.serve_helpers import build_index, local_client, png_bytes


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def client(tmp_path, colour_folder, fake_encoder):
    app = create_app(build_index(tmp_path, colour_folder, fake_encoder),
                     ServeSettings(max_body_bytes=200_000, max_pixels=500 * 500),
                     encoder=fake_encoder)
    with local_client(app) as client:
        yield client


def test_search_by_base64_image_matches_multipart(client):
    green = png_bytes((10, 250, 10))
    multipart = client.post("/api/search/image", data={"target": "texts", "k": "2"},
                            files={"file": ("g.png", green, "image/png")}).json()
    as_json = client.post("/api/search/image/base64",
                          json={"image_base64": b64(green), "target": "texts", "k": 2})
    assert as_json.status_code == 200
    assert [h["id"] for h in as_json.json()["hits"]] == [h["id"] for h in multipart["hits"]]
    assert as_json.json()["hits"][0]["text"] == "green field"
    # A data: URL and base64 wrapped over lines (as MIME writes it) are read too.
    wrapped = "\n".join(b64(green)[i:i + 76] for i in range(0, len(b64(green)), 76))
    for sent in (f"data:image/png;base64,{b64(green)}", wrapped):
        hits = client.post("/api/search/image/base64", json={"image_base64": sent}).json()
        assert hits["hits"][0]["id"] == "green.png"
    cut = client.post("/api/search/image/base64",
                      json={"image_base64": b64(green), "min_score": 0.99}).json()
    assert [h["id"] for h in cut["hits"]] == ["green.png"]


def test_add_item_by_base64(client):
    purple = png_bytes((250, 10, 250))
    added = client.post("/api/items/base64", json={"image_base64": b64(purple),
                                                   "captions": ["a purple square", " "],
                                                   "id": "shapes/purple.png"})
    assert added.status_code == 201, added.text
    assert added.json()["captions"] == ["a purple square"]
    found = client.post("/api/search/text", json={"query": "a purple square",
                                                  "target": "texts"}).json()
    assert found["hits"][0]["item_id"] == "shapes/purple.png"
    again = client.post("/api/items/base64", json={"image_base64": b64(purple),
                                                   "id": "shapes/purple.png"})
    assert again.status_code == 400 and "already indexed" in again.json()["detail"]
    assert client.get("/api/items/shapes/purple.png").status_code == 200


@pytest.mark.parametrize(("sent", "status", "says"), [
    ("not base64!", 400, "not valid base64"),
    ("abc", 400, "not valid base64"),  # bad padding
    ("data:image/png,AAAA", 400, "data: URL"),
    (b64(b"just some text, not an image"), 400, "cannot use the uploaded image"),
    (b64(png_bytes((1, 2, 3), size=(600, 600))), 400, "cannot use the uploaded image"),
    ("", 422, "image_base64"),
])
def test_bad_base64_gets_a_clear_4xx(client, sent, status, says):
    for route, extra in (("/api/search/image/base64", {}), ("/api/items/base64",
                                                            {"captions": ["x"]})):
        response = client.post(route, json={"image_base64": sent, **extra})
        assert response.status_code == status, response.text
        assert says in response.json()["detail"]


def test_base64_over_the_body_cap_is_413(client):
    big = b64(bytes(180_000))  # 240 KB of base64: over the 200 KB cap
    for route in ("/api/search/image/base64", "/api/items/base64"):
        response = client.post(route, json={"image_base64": big})
        assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_items_by_base64_need_writes(tmp_path, colour_folder, fake_encoder):
    app = create_app(build_index(tmp_path, colour_folder, fake_encoder),
                     ServeSettings(allow_writes=False), encoder=fake_encoder)
    with local_client(app) as client:
        response = client.post("/api/items/base64",
                               json={"image_base64": b64(png_bytes((1, 2, 3)))})
        assert response.status_code in (404, 405)
        assert client.post("/api/search/image/base64", json={
            "image_base64": b64(png_bytes((250, 10, 10)))}).json()["hits"][0]["id"] == "red.jpg"
