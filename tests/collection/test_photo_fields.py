"""Photos indexed with their EXIF: filtered by when, where and with what they were taken,
sorted by date; photos without EXIF, or indexed before it was read, index and search as
before."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from crossmodal.collection.sorting import parse_sort, sort_hits
from crossmodal.engine import Collection
from crossmodal.errors import BadInputError
from tests.exif_helpers import write_photo, write_raw_exif
from tests.image_helpers import write_image

# broken.jpg's EXIF block makes PIL warn; the photo indexes all the same (what is tested)
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
EIFFEL, LOUVRE, TIMES_SQUARE = (48.8584, 2.2945), (48.8606, 2.3376), (40.7580, -73.9855)


@pytest.fixture
def photo_folder(tmp_path):
    """Five reddish photos: three with a date, camera and place, one without EXIF, one whose
    EXIF block is broken."""
    root = tmp_path / "photos"
    write_photo(root / "paris.jpg", (250, 10, 10), taken="2024:06:01 14:03:22", make="Apple",
                model="iPhone 13", position=EIFFEL)
    write_photo(root / "louvre.jpg", (240, 20, 10), taken="2023:12:24 09:00:00",
                make="NIKON CORPORATION", model="NIKON D750", position=LOUVRE)
    write_photo(root / "trip/nyc.heic", (230, 30, 20), fmt="HEIF", taken="2024:08:10 20:15:00",
                make="Apple", model="iPhone 15 Pro", position=TIMES_SQUARE, orientation=6)
    write_image(root / "scan.png", (245, 15, 15))
    write_raw_exif(root / "broken.jpg", b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff",
                   colour=(235, 25, 25))
    return root


@pytest.fixture(params=["faiss", "milvus"])
def indexed(request, tmp_path, photo_folder, fake_encoder):
    if request.param == "milvus":
        from tests.stores import milvus_lite_or_skip, release_lite

        probe = tmp_path / "probe.db"
        milvus_lite_or_skip(probe)
        release_lite(str(probe))
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder, store=request.param)
    report = collection.add_paths([photo_folder], progress=False)
    assert (report.added, report.skipped_files) == (5, [])
    yield collection
    if request.param == "milvus":
        from crossmodal.index.milvus_store import CLIENTS

        collection.close()
        CLIENTS.release_all()


def found(collection, where: str, target: str = "images") -> set[str]:
    return {hit.item_id for hit in collection.search_text("red", k=20, target=target,
                                                          where=where)}


def test_filters_on_date_camera_and_place(indexed):
    assert found(indexed, 'taken >= "2024-06-01"') == {"paris.jpg", "trip/nyc.heic"}
    assert found(indexed, 'taken < "2024-01-01"') == {"louvre.jpg"}
    assert found(indexed, 'camera like "%iPhone%"') == {"paris.jpg", "trip/nyc.heic"}
    assert found(indexed, 'make = "NIKON CORPORATION"') == {"louvre.jpg"}
    assert found(indexed, "near(48.8584, 2.2945, 5km)") == {"paris.jpg", "louvre.jpg"}
    assert found(indexed, "near(48.8584, 2.2945, 1km)") == {"paris.jpg"}
    assert found(indexed, "near(40.7128, -74.0060, 10km)") == {"trip/nyc.heic"}
    assert found(indexed, "not near(48.8584, 2.2945, 5km)") == {
        "trip/nyc.heic", "scan.png", "broken.jpg"}  # no position: not near anything
    assert found(indexed, "width = 30 and height = 40") == {"trip/nyc.heic"}  # shot turned
    assert found(indexed, 'taken like "%"') == {"paris.jpg", "louvre.jpg", "trip/nyc.heic"}


def test_sorting_by_date_reorders_the_hits_found(indexed):
    hits = indexed.search_text("red", k=5)
    by_relevance = [h.item_id for h in hits]
    oldest = sort_hits(list(hits), "taken")
    assert [h.item_id for h in oldest][:3] == ["louvre.jpg", "paris.jpg", "trip/nyc.heic"]
    undated = [i for i in by_relevance if i in ("scan.png", "broken.jpg")]
    assert [h.item_id for h in oldest][3:] == undated  # last, in relevance order
    assert [h.rank for h in oldest] == [1, 2, 3, 4, 5]
    newest = sort_hits(indexed.search_text("red", k=5), "taken:desc")
    assert [h.item_id for h in newest][:3] == ["trip/nyc.heic", "paris.jpg", "louvre.jpg"]
    assert [h.item_id for h in newest][3:] == undated
    kept = sort_hits(indexed.search_text("red", k=5), "relevance")
    assert [h.item_id for h in kept] == by_relevance
    assert indexed.search_text("red", k=5)[0].photo.get("taken") in (
        None, "2024-06-01T14:03:22", "2023-12-24T09:00:00", "2024-08-10T20:15:00")


def test_sort_spellings_and_a_bad_one():
    assert [parse_sort(s) for s in (None, "relevance", "taken", "taken:asc", "taken:desc",
                                    "-taken", " Taken ")] == [None, None, False, False,
                                                              True, True, False]
    with pytest.raises(BadInputError, match="unknown sort 'date': use relevance, taken, "
                                            "taken:desc"):
        parse_sort("date")


def test_the_fields_are_kept_through_a_reopen(tmp_path, photo_folder, fake_encoder):
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    collection.add_paths([photo_folder], progress=False)
    again = Collection.open(tmp_path / "index", encoder=fake_encoder)
    assert again.item("paris.jpg")["photo"]["camera"] == "Apple iPhone 13"
    assert found(again, 'camera like "%iPhone%"', target="images") == {
        "paris.jpg", "trip/nyc.heic"}
    hit = again.search_text("red", k=1, where='name = "paris.jpg"')[0]
    assert hit.photo["taken"] == "2024-06-01T14:03:22" and hit.to_dict()["photo"] == hit.photo


def test_captions_carry_their_photo_fields(tmp_path, photo_folder, fake_encoder):
    (photo_folder / "paris.txt").write_text("a red tower\n", encoding="utf-8")
    (photo_folder / "scan.txt").write_text("a red scan\n", encoding="utf-8")
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    collection.add_paths([photo_folder], progress=False)
    assert found(collection, 'taken >= "2024"', target="texts") == {"paris.jpg"}


def test_items_without_photo_fields_open_and_never_match_them(tmp_path, fake_encoder,
                                                              photo_folder):
    """An index written before EXIF was read: its items have no "photo" at all."""
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    vectors = fake_encoder.encode_images([Image.new("RGB", (4, 4), (250, 0, 0))] * 2)
    collection.add_vectors([{"id": "old/a.jpg", "path": "/x/a.jpg"},
                            {"id": "old/b.jpg", "path": "/x/b.jpg"}], np.asarray(vectors))
    items = json.loads(json.dumps(collection.items))
    assert all("photo" not in item for item in items)
    reopened = Collection.open(tmp_path / "index", encoder=fake_encoder)
    reopened.add_paths([photo_folder / "paris.jpg"], progress=False)
    assert found(reopened, 'taken >= "2000-01-01"') == {"paris.jpg"}
    assert found(reopened, "near(48.8584, 2.2945, 50km)") == {"paris.jpg"}
    assert len(found(reopened, 'not camera like "%"')) == 2
    hits = sort_hits(reopened.search_text("red", k=3), "taken:desc")
    assert hits[0].item_id == "paris.jpg"


def test_metadata_an_item_was_given_wins_over_its_exif(tmp_path, fake_encoder):
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    vectors = np.eye(1, 16, dtype=np.float32)
    collection.add_vectors([{"id": "a.jpg", "path": "/x/a.jpg", "photo": {"camera": "Exif"},
                             "meta": {"camera": "Mine"}}], vectors)
    assert collection.search_vectors(vectors, 1, where='camera = "Mine"')[0][0].id == "a.jpg"


def test_keyword_and_hybrid_hits_filter_and_carry_the_fields(tmp_path, photo_folder,
                                                             fake_encoder):
    collection = Collection.create(tmp_path / "index", model="fake:colours",
                                   encoder=fake_encoder)
    collection.add_paths([photo_folder], progress=False)
    for mode in ("keyword", "hybrid"):
        hits = collection.search_text("paris louvre", k=5, mode=mode,
                                      where='taken < "2024-01-01"')
        assert [h.item_id for h in hits] == ["louvre.jpg"], mode
        assert hits[0].photo["camera"] == "NIKON D750"
