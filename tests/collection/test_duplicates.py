"""Duplicate groups: exact copies by file hash, near-duplicates by the stored image vectors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from crossmodal.collection.collection import Collection
from crossmodal.collection.duplicates import (
    components,
    find_duplicates,
    hash_pairs,
    similar_pairs,
)
from crossmodal.data.perceptual_hash import image_hashes
from crossmodal.errors import BadInputError
from crossmodal.models.defaults import DEFAULT_MODEL
from crossmodal.models.duplicate_thresholds import checked_threshold, duplicate_threshold
from tests.duplicate_helpers import write_copies_folder
from tests.paths import SAMPLES


def groups_of(report) -> list[set[str]]:
    return [{m.id for m in g.members} for g in report.groups]


@pytest.fixture
def copies_folder(tmp_path):
    return write_copies_folder(tmp_path / "photos")


def build(tmp_path, folder, encoder) -> Collection:
    collection = Collection.create(tmp_path / "index", model=encoder.model_id, encoder=encoder)
    collection.add_paths([folder], progress=False)
    return collection


def test_copies_group_and_a_distinct_photo_does_not(tmp_path, copies_folder, fake_encoder):
    report = find_duplicates(build(tmp_path, copies_folder, fake_encoder), threshold=0.99)
    assert sorted(groups_of(report), key=sorted) == [{"copy/green.png", "green.png"},
                                                     {"red.jpg", "small/red.png"}]
    assert report.items == 5 and report.duplicates == 2
    by_first = {g.members[0].id: g for g in report.groups}
    # The largest file first; the byte copy is named as one, whatever its captions.
    assert by_first["red.jpg"].members[1].copy_of is None and not by_first["red.jpg"].exact
    green = next(g for g in report.groups if "green.png" in {m.id for m in g.members})
    assert green.exact and green.members[1].copy_of == green.members[0].id
    assert all(m.similarity > 0.99 for g in report.groups for m in g.members)


def test_exact_copies_group_by_file_hash_even_with_unlike_vectors(tmp_path, fake_encoder):
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    vectors = np.eye(16, dtype=np.float32)[:4]  # orthogonal: no near-duplicates at all
    collection.add_vectors([{"id": "a.jpg", "path": "a.jpg", "file_sha256": "f1"},
                            {"id": "b.jpg", "path": "b.jpg", "file_sha256": "f1"},
                            {"id": "c.jpg", "path": "c.jpg", "sha256": "old"},  # older index
                            {"id": "d.jpg", "path": "d.jpg", "sha256": "old"}], vectors)
    report = find_duplicates(collection, threshold=0.5)
    assert sorted(groups_of(report), key=sorted) == [{"a.jpg", "b.jpg"}, {"c.jpg", "d.jpg"}]
    assert all(g.exact for g in report.groups)


def test_indexing_records_the_file_hash_apart_from_the_captions(tmp_path, copies_folder,
                                                                fake_encoder):
    collection = build(tmp_path, copies_folder, fake_encoder)
    first, copy = collection.item("green.png"), collection.item("copy/green.png")
    assert first["file_sha256"] == copy["file_sha256"]
    assert first["sha256"] != copy["sha256"]  # captions differ: the item hash still does


def test_groups_match_a_dense_oracle(tmp_path, fake_encoder):
    """The batched kNN and union-find give the groups of all pairs >= the threshold."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((600, 16)).astype(np.float32)
    near = base[:120] + 0.08 * rng.standard_normal((120, 16)).astype(np.float32)
    vectors = np.concatenate([base, near, base[:30] + 0.05])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    collection.add_vectors([{"id": f"{i}.jpg", "path": f"{i}.jpg"} for i in range(len(vectors))],
                           vectors)
    threshold = 0.97
    sims = vectors @ vectors.T
    rows, cols = np.nonzero(np.triu(sims >= threshold, 1))
    pairs = list(zip(rows, cols, strict=True))
    oracle = {frozenset(f"{i}.jpg" for i in g) for g in components(len(vectors), pairs)}
    report = find_duplicates(collection, threshold=threshold, k=10)
    assert {frozenset(g) for g in groups_of(report)} == oracle
    assert len(oracle) > 50  # the test would mean little with few groups
    found = similar_pairs(collection.images, threshold, k=10, batch=64)
    assert len(found[0]) == len(rows) and (found[2] >= threshold).all()


def test_bad_threshold_is_one_clear_error(tmp_path, fake_encoder):
    for bad in (0, -0.5, 1.5, "nan", "abc"):
        with pytest.raises(BadInputError, match="threshold must be a cosine in"):
            checked_threshold(bad)
    with pytest.raises(BadInputError, match="no calibrated duplicate threshold for model "
                                            "'fake:colours': give a threshold"):
        duplicate_threshold(None, "fake:colours")
    assert duplicate_threshold("0.9", "fake:colours") == 0.9
    # the shipped models have one, tied to their weights
    assert 0.5 < duplicate_threshold(None, DEFAULT_MODEL) < 1.0
    with pytest.raises(BadInputError, match="made with other weights"):
        duplicate_threshold("auto", DEFAULT_MODEL, fingerprint="retrained")


def test_a_real_tower_groups_a_resized_copy_not_another_photo(tmp_path):
    """towers:lite-en with its calibrated threshold: a half-size re-encoded copy and a
    turned copy of a photo join it; other photos of dogs stay apart."""
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("dog-grass.jpg", "dog-sand.jpg", "two-dogs.jpg", "kayak.jpg"):
        shutil.copyfile(SAMPLES / name, root / name)
    with Image.open(SAMPLES / "dog-grass.jpg") as im:
        im.resize((im.width // 2, im.height // 2)).save(root / "dog-grass-small.jpg",
                                                        quality=60)
        im.transpose(Image.Transpose.ROTATE_90).save(root / "dog-grass-turned.jpg")
    collection = Collection.create(tmp_path / "index", model="towers:lite-en")
    collection.add_paths([root], progress=False)
    report = find_duplicates(collection)  # its calibrated threshold
    assert groups_of(report) == [{"dog-grass.jpg", "dog-grass-small.jpg",
                                  "dog-grass-turned.jpg"}]


def test_perceptual_hash_links_join_items_whose_vectors_differ(tmp_path, fake_encoder):
    """Recorded hashes link; items without one get it from their file; -1 turns it off."""
    with Image.open(SAMPLES / "kayak.jpg") as im:
        im.transpose(Image.Transpose.ROTATE_180).save(tmp_path / "kayak-turned.png")
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    with Image.open(SAMPLES / "dog-grass.jpg") as im:
        hashes = image_hashes(im.convert("RGB"))
    vectors = np.eye(16, dtype=np.float32)[:5]  # orthogonal: no vector links
    collection.add_vectors([
        {"id": "a.jpg", "path": "gone/a.jpg", "phash": hashes},
        {"id": "b.jpg", "path": "gone/b.jpg", "phash": hashes[1:] + hashes[:1]},  # turned
        {"id": "kayak.jpg", "path": str(SAMPLES / "kayak.jpg")},  # hashed from its file
        {"id": "kayak-turned.png", "path": str(tmp_path / "kayak-turned.png")},
        {"id": "lost.jpg", "path": str(tmp_path / "missing.jpg")}], vectors)
    report = find_duplicates(collection, threshold=0.9)
    assert sorted(groups_of(report), key=sorted) == [{"a.jpg", "b.jpg"},
                                                     {"kayak-turned.png", "kayak.jpg"}]
    assert report.unhashed == 1  # lost.jpg: no hash, no file
    assert find_duplicates(collection, threshold=0.9, hash_distance=-1).groups == []


def test_photos_with_no_close_hashes_give_no_pairs():
    """Distinct photos only (the demo's twelve): no pair, not an error."""
    hashes = [image_hashes(Image.open(path)) for path in sorted(SAMPLES.glob("*.jpg"))]
    rows, cols, bits = hash_pairs(hashes, max_distance=2)
    assert len(rows) == len(cols) == len(bits) == 0
