"""Filters on a photo's EXIF fields: dates, cameras, and near(lat, lon, distance)."""

from __future__ import annotations

import math
import random
import re

import pytest

from crossmodal.errors import BadInputError
from crossmodal.index.filters import Near, parse_filter
from crossmodal.index.geo import distance_km, haversine_km

EIFFEL = {"lat": 48.8584, "lon": 2.2945, "taken": "2024-06-01T14:03:22",
          "camera": "Apple iPhone 13"}
LOUVRE = {"lat": 48.8606, "lon": 2.3376, "taken": "2023-12-24T09:00:00",
          "camera": "NIKON D750"}
NO_EXIF = {"source": "scan.png"}


def matching(text: str) -> list[dict]:
    where = parse_filter(text)
    return [row for row in (EIFFEL, LOUVRE, NO_EXIF) if where.matches(row)]


def test_taken_compares_as_a_date_prefix():
    assert matching('taken >= "2024-06-01"') == [EIFFEL]
    assert matching('taken < "2024-01-01"') == [LOUVRE]
    assert matching('taken >= "2023-12-24" and taken < "2023-12-25"') == [LOUVRE]
    assert matching('taken like "2024-06-%"') == [EIFFEL]


def test_camera_like_and_missing_fields():
    assert matching('camera like "%iPhone%"') == [EIFFEL]
    assert matching('not camera like "%iPhone%"') == [LOUVRE, NO_EXIF]


@pytest.mark.parametrize("text, expected", [
    ("near(48.8584, 2.2945, 1km)", ["eiffel"]),         # the Louvre is 3.2 km away
    ("near(48.8584, 2.2945, 4km)", ["eiffel", "louvre"]),
    ("near(48.8584, 2.2945, 3000m)", ["eiffel"]),
    ("near(48.8584, 2.2945, 3.5 km)", ["eiffel", "louvre"]),
    ("near(48.8584, 2.2945, 2mi)", ["eiffel", "louvre"]),  # 3.2 km < 2 mi
    ("near(48.8584, 2.2945, 3)", ["eiffel"]),            # a bare number is km
    ("near(48.8606,2.3376,10m)", ["louvre"]),
    ("not near(48.8584, 2.2945, 1km)", ["louvre", "none"]),
    ('near(48.86, 2.3, 5km) and taken >= "2024-01-01"', ["eiffel"]),
])
def test_near_keeps_rows_within_the_distance(text, expected):
    names = {id(EIFFEL): "eiffel", id(LOUVRE): "louvre", id(NO_EXIF): "none"}
    assert [names[id(row)] for row in matching(text)] == expected


def test_haversine_against_known_distances():
    assert haversine_km(48.8584, 2.2945, 48.8606, 2.3376) == pytest.approx(3.16, abs=0.02)
    # Paris - New York, 5,837 km along the great circle
    assert haversine_km(48.8566, 2.3522, 40.7128, -74.0060) == pytest.approx(5837, rel=0.003)
    assert haversine_km(0, 179.9, 0, -179.9) == pytest.approx(22.24, abs=0.05)  # 180th meridian
    assert distance_km("800 m") == 0.8 and distance_km("2mi") == pytest.approx(3.218688)


def test_near_across_the_180th_meridian():
    fiji = {"lat": -17.0, "lon": 179.99}
    assert parse_filter("near(-17.0, -179.99, 5km)").matches(fiji)


def test_a_field_named_near_still_compares():
    assert parse_filter("near = 3").matches({"near": 3})
    assert isinstance(parse_filter("NEAR(1, 2, 3km)").tree, Near)  # as AND, OR: any case


@pytest.mark.parametrize("text, why", [
    ("near(48.85, 2.35)", "near takes (latitude, longitude, distance)"),
    ("near(48.85 2.35 5km)", "near takes (latitude, longitude, distance)"),
    ("near(48.85, 2.35, 5 furlongs)", "the distance is a number with km, m or mi"),
    ("near(paris, 5km)", "the latitude must be a number"),
    ("near(91, 2.35, 5km)", "latitude is -90..90"),
    ("near(48, 200, 5km)", "longitude -180..180"),
    ("near(48, 2, 0km)", "must be above 0"),
    ("near(48, 2, 5km", "it ends too early"),
    ("taken >= 5km", "expected a value, got '5km'"),
])
def test_bad_near_is_one_clear_line(text, why):
    with pytest.raises(BadInputError) as caught:
        parse_filter(text)
    message = str(caught.value)
    assert why in message and "\n" not in message and "near(48.85, 2.35, 5km)" in message


def _box(text: str) -> dict[str, tuple[float, float]]:
    """The bounds of a near() superset, as {field: (low, high)}."""
    expression = parse_filter(text).milvus_superset()
    bounds: dict[str, list[float]] = {}
    for field, op, value in re.findall(r'\$meta\["(\w+)"\] ([<>]=) (-?[\d.e-]+)', expression):
        bounds.setdefault(field, [-math.inf, math.inf])[0 if op == ">=" else 1] = float(value)
    return {field: tuple(b) for field, b in bounds.items()}


@pytest.mark.parametrize("lat, lon, km", [(48.85, 2.35, 5), (-33.9, 151.2, 80),
                                          (69.6, 18.9, 300), (0.0, 0.0, 1)])
def test_the_milvus_superset_holds_every_point_within_reach(lat, lon, km):
    box = _box(f"near({lat}, {lon}, {km}km)")
    assert set(box) == {"lat", "lon"}
    rng = random.Random(0)
    for _ in range(2000):  # points at the edge of the circle, every bearing
        bearing = rng.uniform(0, 2 * math.pi)
        p_lat, p_lon = _destination(lat, lon, km * 0.9999, bearing)
        assert haversine_km(lat, lon, p_lat, p_lon) <= km
        assert box["lat"][0] <= p_lat <= box["lat"][1]
        assert box["lon"][0] <= p_lon <= box["lon"][1]


def test_near_the_pole_or_the_180th_meridian_only_the_latitude_is_bounded():
    assert set(_box("near(89.5, 10, 100km)")) == {"lat"}
    assert set(_box("near(10, 179.99, 100km)")) == {"lat"}
    assert isinstance(parse_filter("near(10, 179.99, 100km)").tree, Near)


def _destination(lat: float, lon: float, km: float, bearing: float) -> tuple[float, float]:
    delta = km / 6371.0088
    phi, lam = math.radians(lat), math.radians(lon)
    phi2 = math.asin(math.sin(phi) * math.cos(delta)
                     + math.cos(phi) * math.sin(delta) * math.cos(bearing))
    lam2 = lam + math.atan2(math.sin(bearing) * math.sin(delta) * math.cos(phi),
                            math.cos(delta) - math.sin(phi) * math.sin(phi2))
    return math.degrees(phi2), (math.degrees(lam2) + 540) % 360 - 180
