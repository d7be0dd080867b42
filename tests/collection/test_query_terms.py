"""Query arithmetic: --plus / --minus terms (text, image file, indexed item), weights, API."""

from __future__ import annotations

import base64
import json

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.engine import Collection
from crossmodal.errors import BadInputError
from crossmodal.query_terms import QueryTerm, parse_term, split_weight
from tests.image_helpers import write_image
from tests.serve_helpers import build_index, local_client, png_bytes


@pytest.fixture
def index(tmp_path, colour_folder, fake_encoder):
    """The colour photos plus a purple one: red + blue points at it."""
    write_image(colour_folder / "purple.png", (250, 10, 250))
    return build_index(tmp_path, colour_folder, fake_encoder)


def search(index, *args, code=0, scores=False) -> list | str:
    result = CliRunner().invoke(cli, ["search", str(index), *map(str, args), "--json"])
    assert result.exit_code == code, result.output
    if code:
        return result.output
    hits = json.loads(result.output)
    return [(h["id"], h["score"]) for h in hits] if scores else [h["id"] for h in hits]


def test_plus_and_minus_move_the_ranking(index, colour_folder):
    plain = search(index, "red")
    assert plain[:2] == ["red.jpg", "purple.png"]
    assert search(index, "red", "--plus", "blue")[0] == "purple.png"
    minus = search(index, "red", "--minus", "blue", scores=True)
    assert minus[0][0] == "red.jpg" and minus[-1][0] == "sub/blue.webp"
    assert dict(search(index, "red", scores=True))["purple.png"] > 0.6
    assert dict(minus)["purple.png"] < 0.1  # as red as it is blue: the two cancel
    # A weight tips the sum: three parts blue to one part red is nearer blue than purple.
    assert search(index, "red", "--plus", "3:blue")[0] == "sub/blue.webp"
    # An existing file is an image term; like:ID is an indexed item.
    assert search(index, "red", "--plus", colour_folder / "sub" / "blue.webp")[0] == "purple.png"
    assert search(index, "red", "--plus", "like:sub/blue.webp")[0] == "purple.png"
    # The base query may be an image or an item too, and --plus alone is a query.
    assert search(index, "--like", "red.jpg", "--plus", "blue")[0] == "purple.png"
    assert search(index, "--plus", "blue", "--plus", "red")[0] == "purple.png"


def test_engine_search_combined(index, fake_encoder):
    collection = Collection.open(index)
    hits = collection.search_combined([QueryTerm("text", "red"),
                                       QueryTerm("image", png_bytes((10, 10, 250)), 1.0)], k=2)
    assert hits[0].id == "purple.png"
    hits = collection.search_combined([QueryTerm("text", "green", 2.0),
                                       QueryTerm("like", "green.png#0", -1.0)], k=1)
    assert hits  # a caption of the item is a term like any other


def test_term_reading_rules(tmp_path):
    assert split_weight("2:golden retriever") == (2.0, "golden retriever")
    assert split_weight("0.5:x") == (0.5, "x")
    assert split_weight("note: a dog") == (1.0, "note: a dog")
    photo = write_image(tmp_path / "pool.jpg", (0, 0, 200))
    assert parse_term(str(photo)) == QueryTerm("image", photo, 1.0)
    assert parse_term(f"2:{photo}", sign=-1) == QueryTerm("image", photo, -2.0)
    assert parse_term("like:./a/b.jpg") == QueryTerm("like", "a/b.jpg", 1.0)
    assert parse_term(str(tmp_path / "missing.jpg")).kind == "text"
    for bad in ("0:grass", "-1:grass", "inf:grass", "1e9:grass", "2:", "like:../x"):
        with pytest.raises(BadInputError):
            parse_term(bad)


def test_bad_terms_get_one_line(index):
    assert search(index, "red", "--minus", "red", code=2).strip() == \
        "error: the query terms cancel out: nothing is left to search for"
    out = search(index, "red", "--plus", "0:blue", code=2).strip().splitlines()
    assert out == ["error: the weight of '0:blue' must be a positive number (subtract with "
                   "--minus)"]
    out = search(index, "red", "--plus", "like:nope.jpg", code=2).strip().splitlines()
    assert len(out) == 1 and "no item or caption 'nope.jpg'" in out[0]
    out = search(index, "--minus", "red", code=2).strip().splitlines()
    assert out == ["error: give exactly one query: a text, --image PATH or --like ITEM_ID"]


def test_api_combined(index, fake_encoder):
    from crossmodal.serve.app import create_app

    blue = base64.b64encode(png_bytes((10, 10, 250))).decode()
    with local_client(create_app(index, encoder=fake_encoder)) as client:
        def post(*terms, code=200, **extra):
            response = client.post("/api/search/combined", json={"terms": list(terms), **extra})
            assert response.status_code == code, response.text
            return response.json()

        assert post({"text": "red"}, {"text": "blue"})["hits"][0]["id"] == "purple.png"
        assert post({"text": "red"}, {"image_base64": blue})["hits"][0]["id"] == "purple.png"
        assert post({"text": "red"}, {"id": "sub/blue.webp", "weight": 3}
                    )["hits"][0]["id"] == "sub/blue.webp"
        ranked = {h["id"]: h["score"] for h in post({"text": "red"},
                                                    {"text": "blue", "weight": -1})["hits"]}
        assert max(ranked, key=ranked.get) == "red.jpg" and ranked["purple.png"] < 0.1
        assert post({"text": "red"}, {"text": "blue"}, min_score=0.99999)["hits"] == []
        assert "exactly one of" in post({"text": "red", "id": "red.jpg"}, code=422)["detail"]
        assert "no item or caption 'nope'" in post({"id": "nope"}, code=404)["detail"]
        assert "cancel out" in post({"text": "red"}, {"text": "red", "weight": -1},
                                    code=400)["detail"]
        assert "subtractions alone" in post({"text": "red", "weight": -1}, code=400)["detail"]
        assert "not valid base64" in post({"image_base64": "%%%"}, code=400)["detail"]
        assert post(code=422, terms=[])
