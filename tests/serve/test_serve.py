"""The HTTP API over a fake-encoder index: every search direction, items, limits, security."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

from crossmodal.errors import BadInputError  # noqa: E402
from crossmodal.serve import ServeSettings, create_app  # noqa: E402
from tests.serve_helpers import build_index, local_client, png_bytes  # noqa: E402

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def index_path(tmp_path, colour_folder, fake_encoder):
    return build_index(tmp_path, colour_folder, fake_encoder)


@pytest.fixture
def client(index_path, fake_encoder):
    return local_client(create_app(index_path, ServeSettings(), encoder=fake_encoder))


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


def test_health_stats_and_page(client):
    assert client.get("/api/health").json() == {"status": "ok"}
    stats = client.get("/api/stats").json()
    assert stats["items"] == 4 and stats["texts"] == 4 and stats["model"] == "fake:colours"
    page = client.get("/")
    assert page.status_code == 200 and 'id="query"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    assert "/api/search/text" in client.get("/openapi.json").json()["paths"]


def test_search_every_direction(client, colour_folder):
    assert ids(client.post("/api/search/text", json={"query": "red", "k": 2}))[0] == "red.jpg"
    texts = client.post("/api/search/text", json={"query": "blue", "k": 1, "target": "texts"})
    assert ids(texts) == ["sub/blue.webp#0"] and texts.json()["hits"][0]["text"] == "deep blue sea"
    long_query = {"query": "a long text about a photo that ends by saying green", "k": 1,
                  "long_text": "tail@6"}  # the fake encoder's 8-token context, capped at 6
    assert ids(client.post("/api/search/text", json=long_query)) == ["green.png"]
    green = (colour_folder / "green.png").read_bytes()
    by_image = client.post("/api/search/image", files={"file": ("g.png", green, "image/png")},
                           data={"k": "1", "target": "texts"})
    assert by_image.json()["hits"][0]["item_id"] == "green.png"
    like = ids(client.post("/api/search/like", json={"id": "red.jpg", "k": 3}))
    assert "red.jpg" not in like and len(like) == 3
    like_caption = client.post("/api/search/like", json={"id": "red.jpg#0", "k": 1})
    assert like_caption.json()["target"] == "texts"
    assert like_caption.json()["hits"][0]["kind"] == "text"


def test_a_query_in_a_language_the_model_does_not_read_gets_a_note(client, fake_encoder):
    assert client.post("/api/search/text", json={"query": "一只红色的狗"}).json()["note"] is None
    fake_encoder.languages = ("en",)  # as towers:lite-en declares
    chinese = client.post("/api/search/text", json={"query": "一只红色的狗"}).json()
    assert "looks Chinese (zh)" in chinese["note"] and chinese["hits"]
    assert client.post("/api/search/text", json={"query": "a red dog"}).json()["note"] is None


def test_items_thumbnails_add_and_remove(client):
    item = client.get("/api/items/sub/blue.webp").json()
    assert item == {"id": "sub/blue.webp", "captions": ["deep blue sea"],
                    "thumbnail": "/api/thumbnails/sub/blue.webp"}
    assert "path" not in item  # server paths stay private
    thumb = client.get(item["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"

    yellow = {"file": ("y.png", png_bytes((240, 240, 0)), "image/png")}
    added = client.post("/api/items", files=yellow,
                        data={"captions": "yellow sun\n\nbright", "id": "new/yellow.png"})
    assert added.status_code == 201, added.text
    assert added.json()["captions"] == ["yellow sun", "bright"]
    assert client.get("/api/stats").json()["items"] == 5
    assert client.get("/api/thumbnails/new/yellow.png").status_code == 200
    other = {"file": ("o.png", png_bytes((1, 2, 3)), "image/png")}
    same_id = client.post("/api/items", files=other,
                          data={"id": "new/yellow.png"})
    assert same_id.status_code == 400 and "already indexed" in same_id.json()["detail"]
    auto = client.post("/api/items", files={"file": ("x.png", png_bytes((9, 9, 9)), "image/png")})
    assert auto.json()["id"].startswith("uploads/")

    removed = client.delete("/api/items/new/yellow.png")
    assert removed.status_code == 200 and removed.json()["id"] == "new/yellow.png"
    assert client.get("/api/items/new/yellow.png").status_code == 404
    assert client.delete("/api/items/new/yellow.png").status_code == 404
    assert client.get("/api/stats").json()["items"] == 5  # 4 + the auto-named one


@pytest.mark.parametrize("method, path, kwargs, status, words", [
    ("post", "/api/search/text", {"json": {"query": "   "}}, 400, "empty"),
    ("post", "/api/search/text", {"json": {"query": "red", "k": 0}}, 422, "k"),
    ("post", "/api/search/text", {"json": {"query": "red", "k": 101}}, 422, "k"),
    ("post", "/api/search/text", {"json": {"query": "red", "target": "sounds"}}, 422, "target"),
    ("post", "/api/search/text", {"json": {"query": "x" * 1001}}, 422, "query"),
    ("post", "/api/search/text", {"json": {"query": "red", "long_text": "middle"}}, 422,
     "long_text"),
    ("post", "/api/search/text", {"content": b"not json",
                                  "headers": {"content-type": "application/json"}}, 422, "JSON"),
    ("post", "/api/search/like", {"json": {"id": "nope.jpg"}}, 404, "nope.jpg"),
    ("post", "/api/search/like", {"json": {"id": "red.jpg#7"}}, 404, "red.jpg#7"),
    ("post", "/api/search/image", {"files": {"file": ("a.png", b"not an image", "image/png")}},
     400, "not a recognised image"),
    ("post", "/api/search/image", {"files": {"file": ("a.png", b"", "image/png")}}, 400, "empty"),
    ("post", "/api/search/image", {"data": {"k": "3"}}, 422, "file"),
    ("get", "/api/items/../../etc/passwd", {}, 404, "no"),  # normalised away, or unknown
    ("get", "/api/thumbnails/%2Fetc%2Fpasswd", {}, 404, "no item"),
    ("post", "/api/items", {"files": {"file": ("a.png", png_bytes((1, 1, 1)), "image/png")},
                            "data": {"id": "../escape.png"}}, 400, "item id"),
])
def test_bad_input_is_a_clear_4xx(client, method, path, kwargs, status, words):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["detail"].lower()


def test_pixel_and_body_limits(index_path, fake_encoder):
    settings = ServeSettings(max_pixels=100 * 100, max_body_bytes=50_000)
    client = local_client(create_app(index_path, settings, encoder=fake_encoder))
    big = client.post("/api/search/image",
                      files={"file": ("big.png", png_bytes((1, 1, 1), (200, 200)), "image/png")})
    assert big.status_code == 400 and "exceeds the cap" in big.json()["detail"]
    huge = client.post("/api/search/image", files={"file": ("h.bin", b"\0" * 60_000)})
    assert huge.status_code == 413 and "limit" in huge.json()["detail"]


def test_token_rate_limit_and_cors(index_path, fake_encoder):
    settings = ServeSettings(token=TOKEN, rate_per_second=1, rate_burst=3)
    client = local_client(create_app(index_path, settings, encoder=fake_encoder))
    assert client.get("/api/stats").status_code == 401
    assert client.get("/api/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/health").status_code == 200  # health needs no token
    auth = {"Authorization": f"Bearer {TOKEN}"}
    codes = [client.get("/api/stats", headers=auth).status_code for _ in range(5)]
    assert codes[:3] == [200] * 3 and codes[-1] == 429
    limited = client.get("/api/stats", headers=auth)
    assert "retry" in limited.json()["detail"] and int(limited.headers["retry-after"]) >= 1
    # CORS is off unless origins are configured: no allow-origin header for a foreign page.
    cors = client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in cors.headers

    allowed = local_client(create_app(
        index_path, ServeSettings(cors_origins=("https://ok.example",)), encoder=fake_encoder))
    ok = allowed.get("/api/health", headers={"Origin": "https://ok.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ok.example"


def test_settings_refuse_unsafe_binding():
    with pytest.raises(BadInputError, match="token"):
        ServeSettings(host="0.0.0.0")
    with pytest.raises(BadInputError, match="16 characters"):
        ServeSettings(host="0.0.0.0", token="short")
    assert ServeSettings(host="0.0.0.0", token=TOKEN).token == TOKEN
    assert ServeSettings(host="::1").token is None


def test_read_only_server_has_no_write_routes(index_path, fake_encoder):
    client = local_client(create_app(index_path, ServeSettings(allow_writes=False),
                                     encoder=fake_encoder))
    assert client.delete("/api/items/red.jpg").status_code == 405
    assert "/api/items" not in client.get("/openapi.json").json()["paths"]


def test_cli_refuses_a_public_address_without_token(index_path, monkeypatch):
    from click.testing import CliRunner

    from crossmodal.cli.main import cli

    monkeypatch.delenv("CROSSMODAL_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["serve", str(index_path), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "set a bearer token" in result.output


def test_streamed_body_without_length_is_capped(index_path, fake_encoder):
    client = local_client(create_app(index_path, ServeSettings(max_body_bytes=10_000),
                                     encoder=fake_encoder))

    def chunks():  # no Content-Length: the server must count what arrives
        for _ in range(20):
            yield b"x" * 1000

    response = client.post("/api/search/text", content=chunks(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_thumbnail_of_a_vanished_file_is_404(client, colour_folder):
    (colour_folder / "green.png").unlink()
    response = client.get("/api/thumbnails/green.png")
    assert response.status_code == 404 and "no longer on disk" in response.json()["detail"]


def test_captions_is_the_same_target_as_texts(client, colour_folder):
    as_texts = client.post("/api/search/text", json={"query": "blue", "k": 1, "target": "texts"})
    as_captions = client.post("/api/search/text",
                              json={"query": "blue", "k": 1, "target": "captions"})
    assert ids(as_captions) == ids(as_texts) == ["sub/blue.webp#0"]
    assert as_captions.json()["target"] == "texts"
    green = (colour_folder / "green.png").read_bytes()
    by_image = client.post("/api/search/image", files={"file": ("g.png", green, "image/png")},
                           data={"k": "1", "target": "captions"})
    assert by_image.json()["hits"][0]["item_id"] == "green.png"
    like = client.post("/api/search/like", json={"id": "red.jpg", "k": 1, "target": "captions"})
    assert like.json()["hits"][0]["kind"] == "text"


def test_captions_of_an_index_without_captions_come_with_a_note(tmp_path, fake_encoder):
    from tests.image_helpers import write_image

    photos = tmp_path / "bare"
    write_image(photos / "red.jpg", (250, 10, 10))
    index = build_index(tmp_path, photos, fake_encoder)
    bare = local_client(create_app(index, ServeSettings(), encoder=fake_encoder))
    found = bare.post("/api/search/image", files={"file": ("r.png", png_bytes((250, 0, 0)),
                                                           "image/png")},
                      data={"target": "captions"}).json()
    assert found["hits"] == [] and "holds no captions" in found["note"]
    assert bare.post("/api/search/text", json={"query": "red"}).json()["note"] is None


def test_api_docs_are_served_from_the_installed_package(client):
    pytest.importorskip("fastapi_offline")
    for page, asset in (("/docs", "/docs-assets/swagger-ui-bundle.js"),
                        ("/redoc", "/docs-assets/redoc.standalone.js")):
        html = client.get(page)
        assert html.status_code == 200 and asset in html.text
        assert "cdn." not in html.text and "https://" not in html.text.split("<body>")[0]
        assert client.get(asset).status_code == 200


def test_full_size_view_is_by_id_scaled_and_guarded(tmp_path, fake_encoder):
    import io

    from PIL import Image

    from tests.image_helpers import write_image

    photos = tmp_path / "big"
    write_image(photos / "wide.jpg", (200, 30, 30), size=(3000, 1000))
    index = build_index(tmp_path, photos, fake_encoder)
    client = local_client(create_app(index, ServeSettings(), encoder=fake_encoder))
    full = client.get("/api/images/wide.jpg")
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(full.content)).size == (2048, 683)
    for bad in ("/api/images/%2Fetc%2Fpasswd", "/api/images/../../etc/passwd",
                "/api/images/nope.jpg"):
        assert client.get(bad).status_code == 404
    (photos / "wide.jpg").unlink()
    assert "no longer on disk" in client.get("/api/images/wide.jpg").json()["detail"]
    locked = local_client(create_app(index, ServeSettings(token=TOKEN), encoder=fake_encoder))
    assert locked.get("/api/images/wide.jpg").status_code == 401
