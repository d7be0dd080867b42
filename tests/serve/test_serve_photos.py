"""The HTTP API filters on photos' EXIF (`where`), orders by it (`sort`) and returns it with
each hit (`photo`), on every search route; an uploaded photo keeps its EXIF too."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

from crossmodal.serve import ServeSettings, create_app  # noqa: E402
from tests.exif_helpers import exif_block, write_paris_photos, write_photo  # noqa: E402
from tests.image_helpers import write_image  # noqa: E402
from tests.serve_helpers import build_index, local_client, png_bytes  # noqa: E402

NEWEST_FIRST = ["nyc.jpg", "paris.jpg", "louvre.jpg", "scan.png"]


@pytest.fixture
def client(tmp_path, fake_encoder):
    photos = tmp_path / "photos"
    write_paris_photos(photos)
    write_photo(photos / "nyc.jpg", (230, 30, 20), taken="2024:08:10 20:15:00", make="Apple",
                model="iPhone 15 Pro", position=(40.7580, -73.9855))
    write_image(photos / "scan.png", (245, 15, 15))
    index = build_index(tmp_path, photos, fake_encoder)
    return local_client(create_app(index, ServeSettings(), encoder=fake_encoder))


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


def test_text_search_with_where_and_sort(client):
    body = {"query": "red", "k": 4}
    assert set(ids(client.post("/api/search/text", json={
        **body, "where": 'camera like "%iPhone%"'}))) == {"paris.jpg", "nyc.jpg"}
    assert ids(client.post("/api/search/text", json={**body, "sort": "taken:desc"})) == \
        NEWEST_FIRST
    oldest = client.post("/api/search/text", json={**body, "sort": "taken",
                                                    "where": "near(48.85, 2.32, 5km)"})
    assert ids(oldest) == ["louvre.jpg", "paris.jpg"]
    first = oldest.json()["hits"][0]
    assert first["rank"] == 1 and first["photo"]["taken"] == "2023-12-24T09:00:00"
    assert first["photo"]["camera"] == "NIKON D750" and first["photo"]["width"] == 40
    plain = client.post("/api/search/text", json={**body, "where": 'name = "scan.png"'})
    assert plain.json()["hits"][0]["photo"] == {**dict.fromkeys(
        ["taken", "camera", "make", "model", "lat", "lon", "orientation"]),
        "width": 32, "height": 24}


def test_image_like_base64_and_combined_routes_take_them_too(client):
    red = png_bytes((250, 10, 10))
    by_image = client.post("/api/search/image", files={"file": ("r.png", red, "image/png")},
                           data={"k": "4", "sort": "taken:desc"})
    assert ids(by_image) == NEWEST_FIRST
    near_paris = client.post("/api/search/image", files={"file": ("r.png", red, "image/png")},
                             data={"k": "4", "where": "near(48.8584, 2.2945, 1km)"})
    assert ids(near_paris) == ["paris.jpg"]
    like = client.post("/api/search/like", json={"id": "scan.png", "k": 3, "sort": "taken"})
    assert ids(like) == ["louvre.jpg", "paris.jpg", "nyc.jpg"]
    like_2024 = client.post("/api/search/like", json={"id": "scan.png", "k": 3,
                                                      "where": 'taken >= "2024-01-01"'})
    assert set(ids(like_2024)) == {"paris.jpg", "nyc.jpg"}
    encoded = base64.b64encode(red).decode()
    assert ids(client.post("/api/search/image/base64", json={
        "image_base64": encoded, "k": 4, "sort": "taken:desc"})) == NEWEST_FIRST
    assert ids(client.post("/api/search/combined", json={
        "terms": [{"text": "red"}], "k": 4, "where": 'taken < "2024-01-01"',
        "sort": "taken"})) == ["louvre.jpg"]


@pytest.mark.parametrize("route, body", [
    ("/api/search/text", {"query": "red"}),
    ("/api/search/like", {"id": "scan.png"}),
    ("/api/search/image/base64", {"image_base64": base64.b64encode(
        png_bytes((1, 2, 3))).decode()}),
    ("/api/search/combined", {"terms": [{"text": "red"}]}),
])
def test_a_bad_filter_or_sort_is_one_clear_line(client, route, body):
    bad_where = client.post(route, json={**body, "where": "near(48.85, 2.35)"})
    assert bad_where.status_code == 400
    detail = bad_where.json()["detail"]
    assert "near takes (latitude, longitude, distance)" in detail and "\n" not in detail
    bad_sort = client.post(route, json={**body, "sort": "date"})
    assert bad_sort.status_code == 422 and "sort" in bad_sort.json()["detail"]


def test_an_uploaded_photo_keeps_its_exif(client):
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (250, 0, 0)).save(out, "JPEG", exif=exif_block(
        taken="2025:01:01 00:00:01", make="Google", model="Pixel 8",
        position=(35.6586, 139.7454)).tobytes())
    added = client.post("/api/items", files={"file": ("tokyo.jpg", out.getvalue(),
                                                      "image/jpeg")})
    assert added.status_code == 201, added.text
    hits = client.post("/api/search/text", json={"query": "red", "k": 5,
                                                 "where": "near(35.66, 139.75, 2km)"})
    assert ids(hits) == [added.json()["id"]]
    assert hits.json()["hits"][0]["photo"]["camera"] == "Google Pixel 8"


def test_the_schema_names_the_sorts(client):
    schema = client.get("/openapi.json").json()
    text_query = schema["components"]["schemas"]["TextQuery"]["properties"]
    assert text_query["sort"]["enum"] == ["relevance", "taken", "taken:desc"]
    assert "near(" in text_query["where"]["description"]


def test_a_heic_photo_is_searched_and_shown(tmp_path, fake_encoder):
    pytest.importorskip("pillow_heif")
    photos = tmp_path / "phone"
    write_photo(photos / "IMG_0001.HEIC", (250, 10, 10), fmt="HEIF", size=(40, 30),
                taken="2024:07:14 21:30:00", make="Apple", model="iPhone 15 Pro",
                orientation=6)
    client = local_client(create_app(build_index(tmp_path, photos, fake_encoder),
                                     ServeSettings(), encoder=fake_encoder))
    hits = client.post("/api/search/text", json={"query": "red", "where": 'taken >= "2024"'})
    assert ids(hits) == ["IMG_0001.HEIC"]
    assert hits.json()["hits"][0]["photo"]["width"] == 30  # as viewed: upright
    thumbnail = client.get("/api/thumbnails/IMG_0001.HEIC")
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    width, height = Image.open(io.BytesIO(thumbnail.content)).size
    assert width < height  # portrait, as the phone held it
