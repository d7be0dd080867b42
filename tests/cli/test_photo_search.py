"""`crossmodal index` reads photos' EXIF; `search --where` filters on it, `--sort taken`
orders by it, and the plain output shows when and with what each photo was taken."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from crossmodal.cli.main import cli
from tests.exif_helpers import write_paris_photos, write_photo
from tests.image_helpers import write_image


@pytest.fixture
def index(tmp_path, fake_encoder):
    photos = tmp_path / "photos"
    write_paris_photos(photos)
    write_photo(photos / "IMG_0042.HEIC", (230, 30, 20), fmt="HEIF",
                taken="2024:08:10 20:15:00", make="Apple", model="iPhone 15 Pro",
                position=(40.7580, -73.9855))
    write_image(photos / "scan.png", (245, 15, 15))
    index = tmp_path / "idx"
    out = run("index", photos, "--into", index, "--model", "fake:colours", "--quiet").output
    assert "indexed 4 new" in out
    return index


def run(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output + str(result.exception)
    return result


def ids(index, *args) -> list[str]:
    hits = json.loads(run("search", index, "red", "--json", "--k", "4", *args).output)
    return [hit["id"] for hit in hits]


def test_where_filters_on_date_camera_and_place(index):
    assert set(ids(index, "--where", 'taken >= "2024-06-01"')) == {"paris.jpg", "IMG_0042.HEIC"}
    assert set(ids(index, "--where", 'camera like "%iPhone%"')) == {"paris.jpg",
                                                                   "IMG_0042.HEIC"}
    assert set(ids(index, "--where", "near(48.85, 2.32, 5km)")) == {"paris.jpg", "louvre.jpg"}


def test_sort_taken_either_way(index):
    assert ids(index, "--sort", "taken")[:3] == ["louvre.jpg", "paris.jpg", "IMG_0042.HEIC"]
    assert ids(index, "--sort", "taken:desc") == ["IMG_0042.HEIC", "paris.jpg", "louvre.jpg",
                                                  "scan.png"]
    relevance = ids(index)
    assert ids(index, "--sort", "relevance") == relevance


def test_plain_output_shows_when_and_with_what(index):
    lines = run("search", index, "red", "--sort", "taken").output.splitlines()
    assert lines[0].startswith("  1 ") and lines[0].endswith(
        "louvre.jpg  [2023-12-24 09:00  NIKON D750]")
    assert lines[2].endswith("[2024-08-10 20:15  Apple iPhone 15 Pro]")
    assert lines[3].endswith("scan.png")  # no EXIF: nothing added


def test_the_json_holds_the_photo_fields(index):
    hit = json.loads(run("search", index, "red", "--json", "--k", "1", "--where",
                         'name = "paris.jpg"').output)[0]
    assert hit["photo"]["camera"] == "Apple iPhone 13" and hit["photo"]["lat"] == \
        pytest.approx(48.8584, abs=1e-5)


@pytest.mark.parametrize("args, message", [
    (("--sort", "date"), "error: unknown sort 'date': use relevance, taken, taken:desc"),
    (("--where", "near(48.85, 2.35)"), "error: bad filter 'near(48.85, 2.35)': near takes "
                                       "(latitude, longitude, distance)"),
    (("--where", "near(48.85, 2.35, 5 parsecs)"), "the distance is a number with km, m or mi"),
])
def test_bad_sort_or_near_is_one_line(index, args, message):
    out = run("search", index, "red", *args, code=2).output
    assert message in out and out.count("\n") == 1 and "Traceback" not in out
