"""Reading a photo's EXIF: each field that is there and makes sense, nothing that is broken."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from crossmodal.data.exif import parse_exif_date, read_photo_info
from crossmodal.data.images import load_image
from tests.exif_helpers import exif_block, write_photo, write_raw_exif


def test_a_phone_photo_gives_every_field(tmp_path):
    path = write_photo(tmp_path / "paris.jpg", taken="2024:06:01 14:03:22", make="Apple",
                       model="iPhone 13", position=(48.8584, 2.2945), orientation=1)
    assert read_photo_info(path) == {
        "taken": "2024-06-01T14:03:22", "make": "Apple", "model": "iPhone 13",
        "camera": "Apple iPhone 13", "lat": pytest.approx(48.8584, abs=1e-5),
        "lon": pytest.approx(2.2945, abs=1e-5), "orientation": 1, "width": 40, "height": 30}


def test_south_and_west_are_negative(tmp_path):
    path = write_photo(tmp_path / "rio.jpg", position=(-22.9519, -43.2105))
    info = read_photo_info(path)
    assert info["lat"] == pytest.approx(-22.9519, abs=1e-5)
    assert info["lon"] == pytest.approx(-43.2105, abs=1e-5)


def test_the_camera_name_says_the_brand_once(tmp_path):
    path = write_photo(tmp_path / "n.jpg", make="NIKON CORPORATION", model="NIKON D750")
    assert read_photo_info(path)["camera"] == "NIKON D750"
    only_make = write_photo(tmp_path / "m.jpg", make="Canon")
    assert read_photo_info(only_make)["camera"] == "Canon"


def test_date_time_is_the_fallback_for_date_time_original(tmp_path):
    both = write_photo(tmp_path / "a.jpg", taken="2020:01:02 03:04:05",
                       date_time="2023:09:09 09:09:09")
    assert read_photo_info(both)["taken"] == "2020-01-02T03:04:05"
    fallback = write_photo(tmp_path / "b.jpg", date_time="2023:09:09 09:09:09")
    assert read_photo_info(fallback)["taken"] == "2023-09-09T09:09:09"
    blank = write_photo(tmp_path / "c.jpg", taken="0000:00:00 00:00:00",
                        date_time="2021:05:05 05:05:05")
    assert read_photo_info(blank)["taken"] == "2021-05-05T05:05:05"


@pytest.mark.parametrize("raw, expected", [
    ("2024:06:01 14:03:22", "2024-06-01T14:03:22"),
    ("2024:06:01 14:03:22\x00", "2024-06-01T14:03:22"),
    ("2024-06-01T14:03", "2024-06-01T14:03:00"),
    ("2024:06:01", "2024-06-01T00:00:00"),
    (b"2024:06:01 14:03:22", "2024-06-01T14:03:22"),
    ("0000:00:00 00:00:00", None),
    ("    :  :     :  :  ", None),
    ("2024:02:30 10:00:00", None),  # no such day
    ("2024:06:01 25:00:00", None),
    ("yesterday", None),
    (20240601, None),
])
def test_exif_dates(raw, expected):
    assert parse_exif_date(raw) == expected


def test_a_turned_photo_reports_its_size_as_viewed(tmp_path):
    path = write_photo(tmp_path / "portrait.jpg", size=(40, 30), orientation=6)
    info = read_photo_info(path)
    assert (info["orientation"], info["width"], info["height"]) == (6, 30, 40)
    assert load_image(path).size == (30, 40)  # what the model sees agrees


def test_no_exif_gives_only_the_size(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (12, 7), (1, 2, 3)).save(path)
    assert read_photo_info(path) == {"width": 12, "height": 7}


@pytest.mark.parametrize("raw", [
    b"Exif\x00\x00garbage, not a TIFF header",
    b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff",  # an IFD that claims 65535 entries
    # IFD0 whose one entry, orientation, points past the end of the block
    b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00\x01\x00\x00\x00\x09\x00",
])
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # PIL's word on it; no failure
def test_a_broken_exif_block_leaves_fields_out_and_the_photo_loads(tmp_path, raw):
    path = write_raw_exif(tmp_path / "broken.jpg", raw)
    assert read_photo_info(path) == {"width": 40, "height": 30}
    assert load_image(path).size == (40, 30)


def test_malformed_fields_are_skipped_one_by_one(tmp_path):
    exif = exif_block(taken="2024:06:01 10:00:00", make="Apple", orientation=1)
    exif[0x0112] = 42  # no such orientation
    exif[0x0110] = "x" * 500  # a model name no camera writes
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (95.0, 0.0, 0.0), "E", (2.0, 0.0, 0.0)  # lat > 90
    path = tmp_path / "odd.jpg"
    Image.new("RGB", (8, 8)).save(path, exif=exif.tobytes())
    assert read_photo_info(path) == {"taken": "2024-06-01T10:00:00", "make": "Apple",
                                     "camera": "Apple", "width": 8, "height": 8}


def test_a_position_of_zero_zero_is_no_fix(tmp_path):
    path = write_photo(tmp_path / "nofix.jpg", position=(0.0, 0.0))
    assert "lat" not in read_photo_info(path)


def test_not_an_image_or_not_a_file_gives_nothing(tmp_path):
    (tmp_path / "notes.jpg").write_text("not a photo")
    assert read_photo_info(tmp_path / "notes.jpg") == {}
    assert read_photo_info(tmp_path / "missing.jpg") == {}
    assert read_photo_info(b"") == {}
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert read_photo_info(fifo) == {}  # never opened for reading: it would block


def test_bytes_read_as_a_file(tmp_path):
    path = write_photo(tmp_path / "a.webp", fmt="WEBP", taken="2022:12:24 18:00:00")
    assert read_photo_info(path.read_bytes())["taken"] == "2022-12-24T18:00:00"


def test_a_heic_photo_from_a_phone(tmp_path):
    pytest.importorskip("pillow_heif")
    path = write_photo(tmp_path / "IMG_0001.HEIC", fmt="HEIF", size=(40, 30),
                       taken="2024:07:14 21:30:00", make="Apple", model="iPhone 15 Pro",
                       position=(43.2965, 5.3698), orientation=6)
    info = read_photo_info(path)
    assert info["taken"] == "2024-07-14T21:30:00" and info["camera"] == "Apple iPhone 15 Pro"
    assert info["lat"] == pytest.approx(43.2965, abs=1e-5)
    # libheif turns the pixels upright: the size as viewed, the orientation as shot
    assert (info["orientation"], info["width"], info["height"]) == (6, 30, 40)
    assert load_image(path).size == (30, 40)
