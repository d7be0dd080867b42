"""What the API's schema calls valid is what it accepts: captions in UTF-8, strict ints,
long-text policies parse_long_text takes, no empty files."""

from __future__ import annotations

import base64
import re

import pytest

pytest.importorskip("fastapi")

from crossmodal.errors import BadInputError  # noqa: E402
from crossmodal.models.long_text import parse_long_text  # noqa: E402
from crossmodal.serve import ServeSettings, create_app  # noqa: E402
from tests.serve_helpers import build_index, local_client, png_bytes  # noqa: E402


@pytest.fixture
def client(tmp_path, colour_folder, fake_encoder):
    index = build_index(tmp_path, colour_folder, fake_encoder)
    return local_client(create_app(index, ServeSettings(), encoder=fake_encoder))


def _image():
    return {"file": ("y.png", png_bytes((240, 240, 0)), "image/png")}


def test_captions_that_are_not_utf8_are_refused_not_stored_as_latin1(client):
    refused = client.post("/api/items", files=_image(),
                          data={"captions": "caf\xe9 au lait".encode("latin-1"), "id": "a.png"})
    assert refused.status_code == 400, refused.text
    assert "'captions' is not utf-8 text (byte 0xe9 at 3)" in refused.json()["detail"]
    assert client.get("/api/items/a.png").status_code == 404  # nothing was added
    added = client.post("/api/items", files=_image(),
                        data={"captions": "café au lait", "id": "a.png"})
    assert added.status_code == 201 and added.json()["captions"] == ["café au lait"]


@pytest.mark.parametrize("route, body", [
    ("/api/search/text", {"query": "red"}), ("/api/search/like", {"id": "red.jpg"}),
    ("/api/search/combined", {"terms": [{"text": "red"}]}),
    ("/api/search/image/base64", {"image_base64": base64.b64encode(
        png_bytes((200, 10, 10))).decode()})])
def test_k_is_an_integer_not_a_boolean(client, route, body):
    assert client.post(route, json={**body, "k": True}).status_code == 422
    assert client.post(route, json={**body, "k": 1.0}).status_code == 422
    assert len(client.post(route, json={**body, "k": 1}).json()["hits"]) == 1


def _schema_property(client, schema: str, name: str) -> dict:
    return client.get("/openapi.json").json()["components"]["schemas"][schema][
        "properties"][name]


@pytest.mark.parametrize("policy", ["head", "tail@4", "chunks@64", "sentences@999999",
                                    "head@0000000000", "head@0", "head@3", "head@04",
                                    "chunks@", "HEAD", "head@9999999999"])
def test_a_long_text_policy_the_schema_allows_is_accepted(client, policy):
    pattern = _schema_property(client, "TextQuery", "long_text")["pattern"]
    try:
        parse_long_text(policy)
        parses = True
    except BadInputError:
        parses = False
    allowed = re.search(pattern, policy) is not None and len(policy) <= 16
    assert not allowed or parses  # the schema never allows what the search refuses
    response = client.post("/api/search/text", json={"query": "red", "long_text": policy})
    assert response.status_code == (200 if allowed else 422), response.text


def test_the_schema_says_an_uploaded_file_is_not_empty(client):
    for schema in ("Body_add_item_api_items_post", "Body_search_image_api_search_image_post"):
        assert _schema_property(client, schema, "file")["minLength"] == 1
    empty = {"file": ("a.png", b"", "image/png")}
    assert client.post("/api/search/image", files=empty).status_code == 400
