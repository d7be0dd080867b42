"""GET /api/duplicates and the page's Duplicates view."""

from __future__ import annotations

import pytest

from crossmodal.engine import Collection
from crossmodal.serve.app import create_app
from crossmodal.serve.settings import ServeSettings
from tests.duplicate_helpers import write_copies_folder
from tests.serve_helpers import local_client, png_bytes


@pytest.fixture
def client(tmp_path, fake_encoder):
    index = tmp_path / "index"
    Collection.create(index, model="fake:colours", encoder=fake_encoder).add_paths(
        [write_copies_folder(tmp_path / "photos")], progress=False)
    app = create_app(index, ServeSettings(), encoder=fake_encoder)
    with local_client(app) as client:
        yield client


def test_duplicate_groups_over_http(client):
    answer = client.get("/api/duplicates", params={"threshold": 0.99})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "fake:colours" and body["items"] == 5 and body["duplicates"] == 2
    assert body["hash_distance"] == 11 and body["unhashed"] == 5  # one colour each: no hash
    groups = {frozenset(m["id"] for m in g["members"]): g for g in body["groups"]}
    assert set(groups) == {frozenset({"green.png", "copy/green.png"}),
                           frozenset({"red.jpg", "small/red.png"})}
    green = groups[frozenset({"green.png", "copy/green.png"})]
    assert green["exact"] and green["members"][1]["copy_of"] == green["members"][0]["id"]
    assert "path" not in green["members"][0]  # no server paths in answers
    thumb = client.get(green["members"][0]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_an_added_copy_joins_its_group(client):
    """The answer kept for one state of the index is not served after a change."""
    assert client.get("/api/duplicates", params={"threshold": 0.99}).json()["duplicates"] == 2
    added = client.post("/api/items", files={"file": ("b.png", png_bytes((10, 10, 250)),
                                                      "image/png")})
    assert added.status_code == 201, added.text
    body = client.get("/api/duplicates", params={"threshold": 0.99}).json()
    assert body["duplicates"] == 3
    assert any("blue.png" in {m["id"] for m in g["members"]} for g in body["groups"])


def test_bad_threshold_is_a_clear_4xx(client):
    for bad in ("0", "1.5", "x"):
        answer = client.get("/api/duplicates", params={"threshold": bad})
        assert answer.status_code == 422 and "threshold" in answer.json()["detail"]
    answer = client.get("/api/duplicates", params={"threshold": 0.9, "hash_distance": 65})
    assert answer.status_code == 422 and "hash_distance" in answer.json()["detail"]
    uncalibrated = client.get("/api/duplicates")  # the fake model has no default threshold
    assert uncalibrated.status_code == 400
    assert "no calibrated duplicate threshold" in uncalibrated.json()["detail"]


def test_the_page_has_a_duplicates_view(client):
    page = client.get("/").text
    script = client.get("/static/app.js").text
    assert 'id="duplicates-button"' in page
    assert '"/api/duplicates"' in script and "showGroups" in script
