"""A collection whose whole state lives in Milvus: against the suite's real Milvus server (and
Milvus Lite for the laptop address), compared with a folder index on the same data."""

from __future__ import annotations

import time

import numpy as np
import pytest

from crossmodal.collection.collection import Collection
from crossmodal.collection.milvus_collection import MilvusCollection
from crossmodal.collection.milvus_schema import STALENESS_MS, parse_address
from crossmodal.collection.targets import collection_class, open_collection
from crossmodal.errors import BadInputError, IndexMismatchError
from tests.fakes import DIM, FakeEncoder


def past_the_bound() -> None:
    """Another process's (here: another object's) reads include a write once this passed."""
    time.sleep(STALENESS_MS / 1000)


def test_addresses_name_a_server_or_a_lite_file():
    server = parse_address("milvus://db.internal:19530/photos")
    assert (server.client_uri, server.name, server.remote) == (
        "http://db.internal:19530", "photos", True)
    assert parse_address("milvus://db/photos").client_uri == "http://db:19530"
    lite = parse_address("milvus-lite:///data/photos.db/holiday")
    assert (lite.client_uri, lite.name, lite.remote) == ("/data/photos.db", "holiday", False)
    for bad in ("milvus://host:1/", "milvus://host:1/a-b", "milvus:///x"):
        with pytest.raises(BadInputError, match="cannot read collection address"):
            parse_address(bad)
    assert collection_class("milvus://h:1/x") is MilvusCollection
    assert collection_class("some/folder") is Collection


def test_a_collection_in_milvus_holds_items_captions_and_its_settings(
        milvus_target, colour_folder, fake_encoder):
    created = MilvusCollection.create(milvus_target, model="fake:colours", encoder=fake_encoder)
    report = created.add_paths([colour_folder], progress=False)
    assert (report.added, report.texts) == (4, 4)
    again = created.add_paths([colour_folder], progress=False)
    assert (again.added, again.unchanged) == (0, 4)  # read back from Milvus, not embedded

    other = open_collection(milvus_target, encoder=fake_encoder)  # another reader, no folder
    past_the_bound()
    assert (len(other), len(other.texts)) == (4, 4)
    assert [h.id for h in other.search_text("red", k=1)] == ["red.jpg"]
    caption = other.search_text("deep blue sea", k=1, target="captions")[0]
    assert (caption.id, caption.text, caption.path) == (
        "sub/blue.webp#0", "deep blue sea", str(colour_folder / "sub" / "blue.webp"))
    assert other.item("red.jpg")["captions"] == ["a red square", "red thing"]

    # An item written again with fewer captions keeps no caption row of its old version.
    (colour_folder / "red.txt").write_text("crimson\n", encoding="utf-8")
    assert created.add_paths([colour_folder], progress=False).updated == 1
    assert len(created.texts) == 3  # its own writes: at once
    past_the_bound()
    assert len(other.texts) == 3
    assert [h.text for h in other.search_text("red thing", k=5, target="texts")
            if h.item_id == "red.jpg"] == ["crimson"]

    assert other.remove(["green.png", "nope.png"]) == ["nope.png"]
    past_the_bound()
    assert "green.png" not in created and len(created) == 3 and len(created.texts) == 2
    created.close()
    other.close()


def test_another_model_or_other_weights_are_refused(milvus_target, fake_encoder):
    MilvusCollection.create(milvus_target, model="fake:colours", encoder=fake_encoder).close()
    with pytest.raises(IndexMismatchError, match="fake:colours"):
        MilvusCollection.open(milvus_target, model="fake:other")
    with pytest.raises(IndexMismatchError, match="other weights"):
        MilvusCollection.open(milvus_target, encoder=FakeEncoder(salt="retrained"))
    with pytest.raises(BadInputError, match="no crossmodal collection"):
        MilvusCollection.open(milvus_target + "_missing")


def _items_with_metadata(count: int) -> tuple[list[dict], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    folders = ["beach", "city", "beach/dunes", "snow"]
    items = [{"id": f"{folders[i % 4]}/p{i:03d}.jpg", "path": f"/photos/p{i:03d}.jpg",
              "captions": [f"caption {i}"] * (i % 3), "mtime_ns": (1_700_000_000 + i * 86_400)
              * 1_000_000_000,
              "meta": {"rating": i % 5, "camera": ["x100", "gr3", "a7"][i % 3],
                       "flash": i % 2 == 0, **({"iso": 100 * i} if i % 4 else {})}}
             for i in range(count)]
    images = rng.normal(size=(count, DIM)).astype(np.float32)
    texts = rng.normal(size=(sum(len(i["captions"]) for i in items), DIM)).astype(np.float32)
    normal = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    return items, normal(images), normal(texts)


FILTERS = [
    'folder = "beach"', 'source like "beach/%"', "rating >= 3", "flash = true",
    'camera in ["x100", "a7"] and rating < 2', "not (rating = 1 or camera = gr3)",
    "iso > 1000", "not iso > 1000", 'date >= "2023-11-20"', "folder != beach",
    'name like "p0_1.jpg"', "modality = text", "caption = 1",
]


@pytest.mark.parametrize("target", ["images", "texts"])
def test_filters_give_the_folder_index_answers(milvus_target, tmp_path, fake_encoder, target):
    items, images, texts = _items_with_metadata(60)
    folder = Collection.create(tmp_path / "index", model="fake:colours", encoder=fake_encoder)
    milvus = MilvusCollection.create(milvus_target, model="fake:colours", encoder=fake_encoder)
    for collection in (folder, milvus):
        collection.add_vectors(items, images, texts)
    queries = np.random.default_rng(3).normal(size=(3, DIM)).astype(np.float32)
    matched = 0
    for where in FILTERS:
        expected = folder.search_vectors(queries, 8, target, where=where)
        got = milvus.search_vectors(queries, 8, target, where=where)
        for want, have in zip(expected, got, strict=True):
            assert [h.id for h in have] == [h.id for h in want], where
            assert np.allclose([h.score for h in have], [h.score for h in want], atol=1e-5)
        matched += any(expected)
    assert matched >= len(FILTERS) - 2  # only the other modality's filters match nothing
    milvus.close()


def test_a_milvus_lite_file_holds_a_collection_on_a_laptop(tmp_path, fake_encoder,
                                                           colour_folder):
    pytest.importorskip("milvus_lite")
    target = f"milvus-lite://{tmp_path}/photos.db/holiday"
    collection = MilvusCollection.create(target, model="fake:colours", encoder=fake_encoder)
    collection.add_paths([colour_folder], progress=False)
    assert [h.id for h in collection.search_text("green", k=1)] == ["green.png"]
    collection.close()
    reopened = open_collection(target, encoder=fake_encoder)
    assert len(reopened) == 4
    reopened.close()
    MilvusCollection.drop(target)
    assert not MilvusCollection.exists(target)


def test_a_rare_filter_milvus_cannot_run_still_fills_every_place(
        milvus_target, fake_encoder, monkeypatch):
    """`not ...` is checked in Python only: past Milvus's largest limit (made small here),
    the matching rows are listed and named to Milvus outright."""
    from crossmodal.collection import milvus_search

    monkeypatch.setattr(milvus_search, "_MAX_LIMIT", 64)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    collection = MilvusCollection.create(milvus_target, model="fake:colours",
                                         encoder=fake_encoder)
    collection.add_vectors([{"id": f"p{i}", "path": "x", "meta": {"r": i}} for i in range(500)],
                           vectors)
    hits = collection.search_vectors(vectors[0], 5, where="not r < 495")[0]
    assert sorted(h.id for h in hits) == [f"p{i}" for i in range(495, 500)]
    collection.close()
