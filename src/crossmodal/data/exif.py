"""What a photo says about itself (EXIF): when and where it was taken, by what camera.

`read_photo_info` reads the header and the EXIF block only, never the pixels. Every field is
read on its own: a field that is missing, malformed or out of range is left out, and a file
whose header or EXIF block cannot be read at all gives {}. Nothing here raises on a bad file:
indexing goes on as it did without EXIF.

Fields (the names `--where` filters on, crossmodal.index.metadata):
    taken        "YYYY-MM-DDTHH:MM:SS", the camera's local clock (DateTimeOriginal, else
                 DateTime); EXIF keeps no time zone, and the photo's own clock is what its
                 owner means by "taken on June 1"
    make, model  as the camera wrote them ("Apple", "iPhone 13")
    camera       make and model in one ("Apple iPhone 13"; "NIKON D750", not "NIKON
                 CORPORATION NIKON D750")
    lat, lon     decimal degrees, south and west negative
    orientation  the EXIF orientation, 1-8 (6: turned 90 degrees clockwise to view)
    width, height  pixels as the photo is viewed (after orientation)
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from pathlib import Path

from PIL import Image, ImageFile

from crossmodal.paths import open_regular_file

PHOTO_FIELDS = ("taken", "camera", "make", "model", "lat", "lon", "orientation", "width",
                "height")
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATE_TIME_ORIGINAL, _DATE_TIME = 0x9003, 0x0132
_MAKE, _MODEL, _ORIENTATION = 0x010F, 0x0110, 0x0112
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_DATE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?")
_MAX_TEXT = 120  # a make or model longer than this is garbage, not a camera's name
# Formats whose decoder already turned the pixels upright (libheif applies the rotation):
# their size is the viewed size and their EXIF orientation was reset to 1.
_UPRIGHT_FORMATS = frozenset({"HEIF", "AVIF"})
# Formats whose getexif reads only what the header holds (PNG's decodes the image).
_HEADER_EXIF_FORMATS = frozenset({"JPEG", "MPO", "WEBP", "HEIF", "AVIF"})


def read_photo_info(source: str | Path | bytes) -> dict:
    """The photo fields of an image file (or its bytes) that it holds and that make sense;
    {} when it holds none or cannot be read."""
    try:
        if isinstance(source, bytes):
            return _info_of(io.BytesIO(source))
        with open_regular_file(source) as handle:
            return _info_of(handle)
    except Exception:  # noqa: BLE001 - any failure here is "no photo fields", never a skip
        return {}


def _info_of(handle) -> dict:  # noqa: ANN001 - a binary file object
    with Image.open(handle) as image:  # lazy: the header, not the pixels
        width, height = image.size
        upright = image.format in _UPRIGHT_FORMATS
        exif = _exif_block(image)
        turned = image.info.get("original_orientation") if upright else None
    info: dict = {}
    for read in (_taken, _camera, _position, _orientation):
        try:
            info.update(read(exif))
        except Exception:  # noqa: BLE001, S112 - a malformed field is left out, the rest kept
            continue
    if turned in range(1, 9):
        info["orientation"] = turned
    if not upright and info.get("orientation", 1) >= 5:  # 5-8 turn the photo a quarter
        width, height = height, width
    info["width"], info["height"] = width, height
    return info


def _exif_block(image: ImageFile.ImageFile) -> Image.Exif:
    """The EXIF the header holds. JPEG's opener has parsed it already (for the DPI), so its
    getexif costs nothing more; other formats' raw block is parsed here: PNG's getexif would
    decode the whole image to look after the pixels, a cost (and a memory risk) out of
    proportion to a date."""
    try:
        if image.format in _HEADER_EXIF_FORMATS:
            return image.getexif()
        exif = Image.Exif()
        raw = image.info.get("exif")
        if isinstance(raw, bytes) and raw:
            exif.load(raw)
        return exif
    except Exception:  # noqa: BLE001 - a broken block: no EXIF fields, the size still kept
        return Image.Exif()


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value if value and len(value) <= _MAX_TEXT and value.isprintable() else None


def parse_exif_date(value: object) -> str | None:
    """An EXIF date ("2024:06:01 14:03:22") as ISO 8601 ("2024-06-01T14:03:22"); None for
    a blank one ("0000:00:00 00:00:00", spaces) or a day that does not exist."""
    text = _text(value)
    match = _DATE.match(text or "")
    if not match:
        return None
    numbers = [int(part) if part else 0 for part in match.groups()]
    try:
        when = dt.datetime(*numbers)
    except ValueError:
        return None
    return when.isoformat() if when.year >= 1826 else None  # before any photograph: unset


def _taken(exif: Image.Exif) -> dict:
    for value in (exif.get_ifd(_EXIF_IFD).get(_DATE_TIME_ORIGINAL), exif.get(_DATE_TIME)):
        taken = parse_exif_date(value)
        if taken:
            return {"taken": taken}
    return {}


def _camera(exif: Image.Exif) -> dict:
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    fields = {key: value for key, value in (("make", make), ("model", model)) if value}
    if make and model:
        brand = make.split()[0].lower()  # "NIKON CORPORATION" -> "nikon"
        fields["camera"] = model if model.lower().startswith(brand) else f"{make} {model}"
    elif make or model:
        fields["camera"] = make or model
    return fields


def _degrees(value: object, ref: object, negative: str) -> float:
    parts = [float(part) for part in (value if isinstance(value, tuple | list) else (value,))]
    degrees = sum(part / 60 ** i for i, part in enumerate(parts[:3]))
    reference = _text(ref) or ""
    return -degrees if reference.upper().startswith(negative) else degrees


def _position(exif: Image.Exif) -> dict:
    gps = exif.get_ifd(_GPS_IFD)
    if _GPS_LAT not in gps or _GPS_LON not in gps:
        return {}
    lat = _degrees(gps[_GPS_LAT], gps.get(_GPS_LAT_REF), "S")
    lon = _degrees(gps[_GPS_LON], gps.get(_GPS_LON_REF), "W")
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        return {}
    if lat == 0 and lon == 0:  # what phones write without a fix: no position, not the sea
        return {}
    return {"lat": round(lat, 6), "lon": round(lon, 6)}


def _orientation(exif: Image.Exif) -> dict:
    value = exif.get(_ORIENTATION)
    return {"orientation": value} if type(value) is int and 1 <= value <= 8 else {}
