"""The search modes over HTTP: `mode` on POST /api/search/text."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from crossmodal.engine import Collection  # noqa: E402
from crossmodal.serve import ServeSettings, create_app  # noqa: E402
from tests.keyword_helpers import TARGET, write_shop_folder  # noqa: E402
from tests.serve_helpers import local_client  # noqa: E402


@pytest.fixture
def client(tmp_path, fake_encoder):
    path = tmp_path / "index"
    Collection.create(path, model="fake:colours", encoder=fake_encoder).add_paths(
        [write_shop_folder(tmp_path / "shop")], progress=False)
    return local_client(create_app(path, ServeSettings(), encoder=fake_encoder))


def search(client, **body):
    return client.post("/api/search/text", json={"k": 5, **body})


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]


def test_modes_over_http(client):
    assert ids(search(client, query="2043"))[-1] == TARGET  # the default: vector
    assert ids(search(client, query="2043", mode="keyword")) == [TARGET]
    assert ids(search(client, query="XJ-9000", mode="hybrid"))[0] == TARGET
    captions = search(client, query="星河", mode="keyword", target="captions").json()
    assert [(h["id"], h["text"]) for h in captions["hits"]] == [(f"{TARGET}#1", "星河牌矿泉水")]
    # hybrid: the cut-off drops vector hits before fusing; the keyword hit stays
    assert ids(search(client, query="XJ-9000", mode="hybrid", min_score=0.99)) == [TARGET]


def test_bad_mode_and_a_cut_off_in_keyword_mode(client):
    bad = search(client, query="red", mode="bm25")
    assert bad.status_code == 422 and "mode" in bad.text
    cut = search(client, query="red", mode="keyword", min_score=0.2)
    assert cut.status_code == 400 and "not to keyword search" in cut.json()["detail"]


def test_a_change_through_the_api_reaches_keyword_search(client, tmp_path):
    from tests.serve_helpers import png_bytes

    assert ids(search(client, query="2043", mode="keyword")) == [TARGET]  # loaded now
    added = client.post("/api/items", files={"file": ("x.png", png_bytes((9, 9, 9)))},
                        data={"captions": "receipt QZ-4411", "id": "scans/receipt.png"})
    assert added.status_code == 201, added.text
    assert ids(search(client, query="qz 4411", mode="keyword")) == ["scans/receipt.png"]
    assert client.delete(f"/api/items/{TARGET}").status_code == 200
    assert ids(search(client, query="2043", mode="keyword")) == []
