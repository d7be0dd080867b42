from __future__ import annotations

import json
import os

import numpy as np
import pytest

from crossmodal.engine import Collection
from crossmodal.errors import BadInputError, IndexCorruptError, IndexMismatchError
from tests.fakes import FakeEncoder
from tests.image_helpers import write_image


def build(tmp_path, colour_folder, encoder):
    collection = Collection.create(tmp_path / "index", model="fake:colours", encoder=encoder)
    report = collection.add_paths([colour_folder], progress=False)
    return collection, report


def test_add_and_search_every_direction(tmp_path, colour_folder, fake_encoder):
    collection, report = build(tmp_path, colour_folder, fake_encoder)
    assert report.added == 4 and report.texts == 4
    assert ("empty caption" in {why for _, why in report.skipped_captions})
    assert sorted(i["id"] for i in collection.items) == [
        "green.png", "nocaption.bmp", "red.jpg", "sub/blue.webp"]

    top = collection.search_text("red", k=2)  # text -> image
    assert top[0].id == "red.jpg" and top[0].kind == "image" and top[0].rank == 1
    assert top[0].score >= top[1].score
    captions = collection.search_image(colour_folder / "green.png", k=1, target="texts")
    assert captions[0].item_id == "green.png" and captions[0].text == "green field"
    similar = collection.search_like("red.jpg", k=3)  # image -> image, itself excluded
    assert "red.jpg" not in [h.id for h in similar] and len(similar) == 3
    texts = collection.search_text("blue", k=1, target="texts")  # text -> text
    assert texts[0].id == "sub/blue.webp#0"
    like_text = collection.search_like("red.jpg#0", k=1)
    assert like_text[0].kind == "text" and like_text[0].item_id == "red.jpg"


def test_reopen_and_rerun_only_embeds_new_or_changed(tmp_path, colour_folder, fake_encoder):
    collection, _ = build(tmp_path, colour_folder, fake_encoder)
    seen = fake_encoder.images_seen
    again = Collection.open(tmp_path / "index", encoder=fake_encoder)
    report = again.add_paths([colour_folder], progress=False)
    assert (report.added, report.updated, report.unchanged) == (0, 0, 4)
    assert fake_encoder.images_seen == seen

    write_image(colour_folder / "red.jpg", (10, 10, 250))  # red becomes blue
    write_image(colour_folder / "new.png", (250, 250, 10))
    report = again.add_paths([colour_folder], progress=False)
    assert (report.added, report.updated, report.unchanged) == (1, 1, 3)
    assert fake_encoder.images_seen == seen + 2
    reopened = Collection.open(tmp_path / "index", encoder=fake_encoder)
    assert len(reopened) == 5 and len(reopened.texts) == 4
    blue_like = {h.id for h in reopened.search_text("blue", k=2)}
    assert blue_like == {"red.jpg", "sub/blue.webp"}


def test_touching_a_file_without_changing_it_is_unchanged(tmp_path, colour_folder, fake_encoder):
    collection, _ = build(tmp_path, colour_folder, fake_encoder)
    os.utime(colour_folder / "green.png", ns=(1, 1))
    report = collection.add_paths([colour_folder], progress=False)
    assert report.unchanged == 4 and report.updated == 0


def test_caption_change_re_embeds(tmp_path, colour_folder, fake_encoder):
    collection, _ = build(tmp_path, colour_folder, fake_encoder)
    (colour_folder / "green.txt").write_text("green field\nlawn\n", encoding="utf-8")
    report = collection.add_paths([colour_folder], progress=False)
    assert report.updated == 1
    assert collection.item("green.png")["captions"] == ["green field", "lawn"]
    assert len(collection.texts) == 5


def test_remove(tmp_path, colour_folder, fake_encoder):
    collection, _ = build(tmp_path, colour_folder, fake_encoder)
    missing = collection.remove(["red.jpg", "nope", "red.jpg", "nope"])
    assert missing == ["nope"]  # each unknown id once
    reopened = Collection.open(tmp_path / "index", encoder=fake_encoder)
    assert "red.jpg" not in reopened and len(reopened) == 3
    assert all(item != "red.jpg" for item, _ in reopened.text_rows)
    assert len(reopened.texts) == 2
    assert reopened.search_text("red", k=1)[0].id != "red.jpg"


def test_bad_images_are_skipped_and_logged(tmp_path, colour_folder, fake_encoder):
    (colour_folder / "empty.jpg").write_bytes(b"")
    (colour_folder / "notes.png").write_text("not an image")
    good = (colour_folder / "red.jpg").read_bytes()
    (colour_folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (colour_folder / "readme.md").write_text("hello")
    collection, report = build(tmp_path, colour_folder, fake_encoder)
    reasons = {os.path.basename(what): why for what, why in report.skipped_files}
    assert reasons["empty.jpg"] == "zero-byte file"
    assert "not a recognised image" in reasons["notes.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert reasons["readme.md"] == "not an image file"
    assert report.added == 4 and len(collection) == 4
    log = json.loads(report.log_path.read_text())
    assert {os.path.basename(s["input"]) for s in log["skipped_files"]} >= {"empty.jpg",
                                                                            "notes.png"}
    assert log["skipped_captions"] == [
        {"caption": f"{colour_folder / 'sub' / 'blue.webp.txt'}:2", "reason": "empty caption"}]


def test_long_captions_are_reported(tmp_path, colour_folder, fake_encoder):
    (colour_folder / "green.txt").write_text("green " * 20 + "\n", encoding="utf-8")
    _, report = build(tmp_path, colour_folder, fake_encoder)
    assert report.truncated == [("green.png#0", 22)]


def test_other_model_is_refused(tmp_path, colour_folder, fake_encoder):
    build(tmp_path, colour_folder, fake_encoder)
    with pytest.raises(IndexMismatchError, match="built with model 'fake:colours'"):
        Collection.open(tmp_path / "index", model="towers:lite-en")
    with pytest.raises(IndexMismatchError, match="other weights"):
        Collection.open(tmp_path / "index", encoder=FakeEncoder(salt="retrained"))


def test_open_missing_index_and_bad_queries(tmp_path, colour_folder, fake_encoder):
    with pytest.raises(BadInputError, match="no crossmodal index"):
        Collection.open(tmp_path / "nothing")
    collection, _ = build(tmp_path, colour_folder, fake_encoder)
    with pytest.raises(BadInputError, match="empty"):
        collection.search_text("   ")
    with pytest.raises(BadInputError, match="no item"):
        collection.search_like("missing.jpg")
    with pytest.raises(BadInputError, match="cannot use query image"):
        collection.search_image(tmp_path / "missing.png")
    with pytest.raises(BadInputError, match="target"):
        collection.search_text("red", target="audio")
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "x").write_text("x")
    with pytest.raises(BadInputError, match="not a crossmodal index"):
        Collection.create(tmp_path / "occupied", model="fake:colours", encoder=fake_encoder)


def test_manifest_records_model_and_checksums(tmp_path, colour_folder, fake_encoder):
    collection, _ = build(tmp_path, colour_folder, fake_encoder)
    # The build went into the write-ahead log; the manifest names the generation it follows.
    assert collection.compact() == []  # fold the log into a full generation now
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["model"] == "fake:colours" and manifest["dim"] == 16
    assert manifest["counts"] == {"items": 4, "images": 4, "texts": 4}
    assert set(manifest["versions"]) >= {"crossmodal", "faiss", "torch"}
    assert collection.manifest.verify(tmp_path / "index") == []
    # Only the current generation (and its log, empty after compaction) stays on disk.
    names = sorted(p.name for p in (tmp_path / "index").iterdir() if p.name[0] != ".")
    current = [f["name"] for f in manifest["files"].values()]
    assert names == sorted(["manifest.json", "logs", manifest["log"], *current])
    assert (tmp_path / "index" / manifest["log"]).stat().st_size == 0


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_index_types_agree_on_small_data(tmp_path, colour_folder, fake_encoder, index_type):
    collection = Collection.create(tmp_path / index_type, model="fake:colours",
                                   index_type=index_type, encoder=fake_encoder)
    collection.add_paths([colour_folder], progress=False)
    reopened = Collection.open(tmp_path / index_type, encoder=fake_encoder)
    assert reopened.manifest.index_type == index_type
    assert reopened.search_text("green", k=1)[0].id == "green.png"
    vectors = np.asarray(reopened.images.vectors)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_unreadable_file_is_skipped_not_fatal(tmp_path, colour_folder, fake_encoder,
                                             monkeypatch):
    import crossmodal.collection.ingest as ingest

    real = ingest.content_hash

    def unreadable_green(path, captions, *known):
        if path.name == "green.png":
            raise PermissionError(13, "Permission denied")
        return real(path, captions, *known)

    monkeypatch.setattr(ingest, "content_hash", unreadable_green)
    collection, report = build(tmp_path, colour_folder, fake_encoder)
    assert ("cannot read: Permission denied" in {why for _, why in report.skipped_files})
    assert "green.png" not in collection and len(collection) == 3


@pytest.mark.parametrize("damage", [b'{"items": [', b"\xff\xfe", b'{"texts": []}', b"[]"])
def test_corrupt_items_json_is_an_index_error(tmp_path, colour_folder, fake_encoder, damage):
    collection, _ = build(tmp_path, colour_folder, fake_encoder)
    items = tmp_path / "index" / collection.manifest.files["items"]["name"]
    items.write_bytes(damage)
    with pytest.raises(IndexCorruptError, match=rf"{items.name} is corrupt .*--verify"):
        Collection.open(tmp_path / "index", encoder=fake_encoder)
    assert collection.manifest.verify(tmp_path / "index") == ["items"]


def test_a_store_that_cannot_start_leaves_no_folder(tmp_path, fake_encoder, monkeypatch):
    import crossmodal.collection.collection as engine

    def unreachable(*args, **kwargs):
        raise ConnectionError("Milvus at http://127.0.0.1:1 is unreachable")

    monkeypatch.setattr(engine, "new_stores", unreachable)
    with pytest.raises(ConnectionError, match="unreachable"):
        Collection.create(tmp_path / "new" / "index", model="fake:colours")
    assert not (tmp_path / "new" / "index").exists()
    (tmp_path / "mine").mkdir()  # a folder the user made stays
    with pytest.raises(ConnectionError):
        Collection.create(tmp_path / "mine", model="fake:colours")
    assert (tmp_path / "mine").is_dir()
