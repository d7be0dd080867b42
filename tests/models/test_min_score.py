"""The relevance cut-off: --min-score (CLI), min_score (engine, HTTP), calibrated defaults."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from crossmodal.engine import Collection
from crossmodal.errors import BadInputError
from crossmodal.models import score_thresholds
from crossmodal.models.score_thresholds import resolve_min_score
from tests.serve_helpers import build_index, local_client, png_bytes


@pytest.fixture
def calibrated_fake(tmp_path, monkeypatch, fake_encoder):
    """A thresholds table with an entry for the fake encoder."""
    monkeypatch.setattr(score_thresholds, "DATA", tmp_path / "thresholds.json")
    score_thresholds.write_thresholds("fake:colours", fake_encoder.fingerprint,
                                      {"p90": 0.9, "p50": 0.7}, "test")
    return fake_encoder


def test_min_score_drops_hits_below(tmp_path, colour_folder, fake_encoder):
    collection = Collection.open(build_index(tmp_path, colour_folder, fake_encoder))
    every = collection.search_text("red", k=4)
    assert len(every) == 4 and every[1].score < 0.7 < every[0].score
    kept = collection.search_text("red", k=4, min_score=0.7)
    assert [h.id for h in kept] == ["red.jpg"]
    assert collection.search_like("red.jpg", k=3, min_score=0.999) == []


def test_calibrated_names_need_a_calibrated_model(calibrated_fake):
    fingerprint = calibrated_fake.fingerprint
    assert resolve_min_score("auto", "fake:colours", fingerprint) == 0.7
    assert resolve_min_score("P90", "fake:colours", fingerprint) == 0.9
    assert resolve_min_score("0.3", "fake:colours") == 0.3
    assert resolve_min_score(None, "fake:colours") is None
    with pytest.raises(BadInputError, match="no calibrated min-score for model 'other:m'"):
        resolve_min_score("auto", "other:m")
    with pytest.raises(BadInputError, match="other weights"):
        resolve_min_score("auto", "fake:colours", "not-the-same")
    with pytest.raises(BadInputError, match="has min-score cut-offs p50, p90, not p70"):
        resolve_min_score("p70", "fake:colours", fingerprint)
    for bad in ("lots", "nan", "1.5", "inf"):
        with pytest.raises(BadInputError, match="--min-score must be"):
            resolve_min_score(bad, "fake:colours")


def test_per_language_thresholds_follow_the_query(calibrated_fake):
    """A model calibrated per query language (the bilingual fusion scores a Chinese query on
    another scale) uses the query's language's table; other or no text: the model's own."""
    fingerprint = calibrated_fake.fingerprint
    score_thresholds.write_thresholds("fake:colours", fingerprint, {"p50": 0.4}, "zh test",
                                      language="zh", default=False)
    assert resolve_min_score("auto", "fake:colours", fingerprint, "两只狗在雪地里玩") == 0.4
    assert resolve_min_score("auto", "fake:colours", fingerprint,
                             "two dogs playing in the snow") == 0.7
    assert resolve_min_score("auto", "fake:colours", fingerprint) == 0.7
    with pytest.raises(BadInputError, match="has min-score cut-offs p50, not p90"):
        resolve_min_score("p90", "fake:colours", fingerprint, "两只狗在雪地里玩")
    # new weights drop every table of the old ones
    score_thresholds.write_thresholds("fake:colours", "new", {"p50": 0.5}, "en test",
                                      language="en")
    entry = score_thresholds.calibrated()["fake:colours"]
    assert entry["languages"] == {"en": {"p50": 0.5}} and entry["thresholds"] == {"p50": 0.5}


def test_shipped_thresholds_match_the_shipped_weights():
    """`auto` on the default model works out of the box: the table names its weights."""
    from crossmodal.models.registry import load_encoder

    encoder = load_encoder("towers:lite-en")
    cut = resolve_min_score("auto", "towers:lite-en", encoder.fingerprint)
    assert 0.0 < cut < 1.0


def test_cli_min_score(tmp_path, colour_folder, calibrated_fake):
    index = build_index(tmp_path, colour_folder, calibrated_fake)
    runner = CliRunner()
    out = runner.invoke(cli, ["search", str(index), "red", "--json", "--min-score", "auto"])
    assert out.exit_code == 0, out.output
    assert [h["id"] for h in json.loads(out.output)] == ["red.jpg"]
    none = runner.invoke(cli, ["search", str(index), "red", "--min-score", "0.9999"])
    assert none.exit_code == 0 and "(no results)" in none.output
    bad = runner.invoke(cli, ["search", str(index), "red", "--min-score", "high"])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        f"error: --min-score must be {score_thresholds.HELP}, not 'high'"]


def test_api_min_score(tmp_path, colour_folder, calibrated_fake):
    from crossmodal.serve.app import create_app

    app = create_app(build_index(tmp_path, colour_folder, calibrated_fake),
                     encoder=calibrated_fake)
    with local_client(app) as client:
        text = client.post("/api/search/text", json={"query": "red", "k": 4, "min_score": 0.7})
        assert [h["id"] for h in text.json()["hits"]] == ["red.jpg"]
        auto = client.post("/api/search/text", json={"query": "red", "min_score": "auto"})
        assert [h["id"] for h in auto.json()["hits"]] == ["red.jpg"]
        image = client.post("/api/search/image", data={"k": "4", "min_score": "0.99"},
                            files={"file": ("q.png", png_bytes((10, 250, 10)), "image/png")})
        assert [h["id"] for h in image.json()["hits"]] == ["green.png"]
        like = client.post("/api/search/like", json={"id": "red.jpg", "min_score": 0.9999})
        assert like.status_code == 200 and like.json()["hits"] == []
        bad = client.post("/api/search/text", json={"query": "red", "min_score": 3})
        assert bad.status_code == 400 and "between -1 and 1" in bad.json()["detail"]
        bad = client.post("/api/search/image", data={"min_score": "lots"},
                          files={"file": ("q.png", png_bytes((10, 250, 10)), "image/png")})
        assert bad.status_code == 400 and "min-score must be" in bad.json()["detail"]
        bad = client.post("/api/search/like", json={"id": "red.jpg", "min_score": -2})
        assert bad.status_code == 400 and "between -1 and 1" in bad.json()["detail"]
        bad = client.post("/api/search/text", json={"query": "red", "min_score": "p70"})
        assert bad.status_code == 422
