"""Photos whose EXIF the test writes: when, with what camera, where, which way up."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

EXIF_IFD, GPS_IFD = 0x8769, 0x8825


def exif_block(taken: str | None = None, make: str | None = None, model: str | None = None,
               position: tuple[float, float] | None = None, orientation: int | None = None,
               date_time: str | None = None) -> Image.Exif:
    """An EXIF block: `taken` as DateTimeOriginal and `date_time` as DateTime (both in
    EXIF's "YYYY:MM:DD HH:MM:SS"), `position` as GPS degrees/minutes/seconds."""
    exif = Image.Exif()
    for tag, value in ((0x010F, make), (0x0110, model), (0x0112, orientation),
                       (0x0132, date_time)):
        if value is not None:
            exif[tag] = value
    if taken is not None:
        exif.get_ifd(EXIF_IFD)[0x9003] = taken
    if position is not None:
        gps = exif.get_ifd(GPS_IFD)
        for ref_tag, tag, value, signs in ((1, 2, position[0], "NS"), (3, 4, position[1], "EW")):
            magnitude = abs(value)
            degrees = int(magnitude)
            minutes = int((magnitude - degrees) * 60)
            seconds = round(((magnitude - degrees) * 60 - minutes) * 60, 4)
            gps[ref_tag] = signs[value < 0]
            gps[tag] = (float(degrees), float(minutes), seconds)
    return exif


def write_photo(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size=(40, 30),
                fmt: str | None = None, **fields) -> Path:
    """A solid-colour photo with an EXIF block made of `fields` (see exif_block); HEIC needs
    pillow-heif's plugin registered (crossmodal.data.images does it)."""
    import crossmodal.data.images  # noqa: F401 - registers the HEIF opener

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt, exif=exif_block(**fields).tobytes())
    return path


def write_raw_exif(path: Path, raw: bytes, colour=(30, 30, 200), size=(40, 30)) -> Path:
    """A JPEG whose EXIF block is `raw` as given (broken ones included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG", exif=raw)
    return path


def write_paris_photos(folder: Path) -> None:
    """Two red-ish photos the photo-field tests share: paris.jpg (iPhone 13, 2024-06-01, by
    the Eiffel tower) and louvre.jpg (Nikon D750, 2023-12-24, by the Louvre)."""
    write_photo(folder / "paris.jpg", (250, 10, 10), taken="2024:06:01 14:03:22", make="Apple",
                model="iPhone 13", position=(48.8584, 2.2945))
    write_photo(folder / "louvre.jpg", (240, 20, 10), taken="2023:12:24 09:00:00",
                make="NIKON CORPORATION", model="NIKON D750", position=(48.8606, 2.3376))
