"""Safe image loading: formats, EXIF orientation, a pixel cap read before decoding.

`load_image` is the one door for untrusted images: whatever a decoder raises on a bad file
(PIL plugins raise IndexError, struct.error, NotImplementedError, ... besides OSError) comes
out as ImageLoadError with the reason, and only regular files are read.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import io
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from crossmodal.paths import NotRegularFileError, open_regular_file

try:  # HEIC/HEIF, what phones save photos as: PIL opens them once the plugin is registered
    from pillow_heif import register_heif_opener
except ImportError:  # a broken install: such files are skipped as unrecognised, not a crash
    pass
else:
    register_heif_opener()

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".heic",
                              ".heif"})
# 64 MP: far above any photo we embed at 224 px, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 64_000_000
# Wider (or taller) than this, an image's centre crop, all a model sees of it, is a sliver;
# long screenshots (~30:1) and panoramas (~10:1) pass.
MAX_ASPECT_RATIO = 50

# Modes Image.reduce works on directly; others (palette, CMYK...) go through RGB first.
_REDUCIBLE_MODES = frozenset({"L", "RGB", "I", "F"})

# Reserves memory for a decode of that many bytes while the block runs (serve's budget).
MemoryReservation = Callable[[int], AbstractContextManager]


class ImageLoadError(Exception):
    """An input that is not a usable image; the message says why."""


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_image(
    source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: int | None = None, max_aspect: float = MAX_ASPECT_RATIO,
    reserve: MemoryReservation | None = None,
) -> Image.Image:
    """Decode an image to RGB, refusing bombs before decoding and applying EXIF orientation.

    `target_size` lets JPEG decode at a reduced scale (draft mode) when the image is much
    larger than the model input: the same pixels at a fraction of the cost. Other formats
    decode in full, then shrink (still >= 2x `target_size`) before any copy is made, so one
    decode holds the full-size buffer once and only briefly. `reserve(nbytes)`, when given,
    is held around the decode with what it may allocate (known from the header).
    """
    with _as_load_errors():
        if isinstance(source, bytes):
            if not source:
                raise ImageLoadError("empty data")
            return _decode(io.BytesIO(source), max_pixels, target_size, max_aspect, reserve)
        with open_regular_file(source) as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                raise ImageLoadError("zero-byte file")
            return _decode(handle, max_pixels, target_size, max_aspect, reserve)
    raise AssertionError("unreachable")  # _as_load_errors re-raises every exception


@contextlib.contextmanager
def _as_load_errors() -> Iterator[None]:
    """Any failure to read or decode, as ImageLoadError saying why. MemoryError is left as
    is: it says how busy this process is, not what is wrong with the file."""
    try:
        yield
    except (ImageLoadError, MemoryError):
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError("file not found") from exc
    except NotRegularFileError as exc:
        raise ImageLoadError(f"not read: {exc.strerror}") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"decompression bomb refused: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError("not a recognised image format") from exc
    except OSError as exc:
        if exc.errno is not None:  # the file system's answer (ELOOP, EACCES, ENAMETOOLONG...)
            raise ImageLoadError(f"cannot read: {exc.strerror or errno.errorcode[exc.errno]}"
                                 ) from exc
        raise ImageLoadError(f"corrupt or truncated image: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise anything on bad bytes
        raise ImageLoadError(f"corrupt or truncated image ({type(exc).__name__}: {exc})"
                             ) from exc


def image_header(data: bytes) -> tuple[str | None, int, int]:
    """(format, width, height) of the image in `data` ("JPEG", "PNG", ...): the header only."""
    with _as_load_errors(), Image.open(io.BytesIO(data)) as image:
        return image.format, image.width, image.height
    raise AssertionError("unreachable")  # _as_load_errors re-raises every exception


def check_shape(width: int, height: int, max_pixels: int,
                max_aspect: float = MAX_ASPECT_RATIO) -> None:
    """Refuse, from the header alone, a size that costs too much or says too little."""
    if width * height > max_pixels:
        raise ImageLoadError(
            f"{width}x{height} = {width * height:,} pixels exceeds the cap of {max_pixels:,}")
    if min(width, height) < 1:
        raise ImageLoadError(f"{width}x{height}: an image with no pixels")
    if max(width, height) > max_aspect * min(width, height):
        raise ImageLoadError(
            f"{width}x{height}: aspect ratio {max(width, height) / min(width, height):,.0f}:1 "
            f"exceeds {max_aspect:g}:1 (crop it to what matters)")


def _decode(handle: BinaryIO, max_pixels: int, target_size: int | None, max_aspect: float,
            reserve: MemoryReservation | None) -> Image.Image:
    image = Image.open(handle)
    check_shape(*image.size, max_pixels, max_aspect)  # read from the header: nothing decoded
    if getattr(image, "is_animated", False):
        image.seek(0)  # first frame of a GIF/WebP animation
    if target_size and image.format == "JPEG":
        image.draft("RGB", (target_size * 2, target_size * 2))  # the size decoded shrinks
    with (reserve or _no_reservation)(decode_cost(image.width, image.height, image.mode,
                                                  target_size)):
        image.load()
        if target_size:
            image = _reduced(image, 2 * target_size)
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")


def decode_cost(width: int, height: int, mode: str, target_size: int | None = None) -> int:
    """Bytes a decode of a width x height frame in `mode` may hold at once: the frame (1, 2
    or 4 bytes a pixel in PIL) and what it shrinks or converts through at full size (one
    band of a reducible mode, or a whole RGB copy: palette, CMYK, 16-bit, no shrinking)."""
    frame = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    shrinks_in_place = target_size and (mode in _REDUCIBLE_MODES or mode in ("RGBA", "LA"))
    return width * height * (frame + (1 if shrinks_in_place else 4))


def _no_reservation(nbytes: int) -> AbstractContextManager:
    return contextlib.nullcontext()


def _reduced(image: Image.Image, min_side: int) -> Image.Image:
    """`image` shrunk by a whole factor (box filter) keeping its shorter side >= `min_side`."""
    factor = min(image.size) // min_side
    if factor < 2:
        return image
    if image.mode in ("RGBA", "LA"):
        # Alpha is dropped by the RGB conversion anyway; reducing band by band avoids the
        # full-size premultiplied copy Image.reduce makes of an image with alpha.
        colour = image.mode[:-1]
        reduced = Image.merge(colour, [image.getchannel(b).reduce(factor) for b in colour])
    else:
        source = image if image.mode in _REDUCIBLE_MODES else image.convert("RGB")
        reduced = source.reduce(factor)
    reduced.info = dict(image.info)  # keeps the EXIF orientation for exif_transpose
    image.close()  # the full-size buffer goes now, not when the caller is done
    return reduced


@functools.cache
def _libc_malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def return_freed_memory() -> None:
    """Give the pages of freed image buffers back to the OS now (glibc keeps them in the
    freeing thread's arena otherwise, so a server's RSS stays at its peak for good)."""
    trim = _libc_malloc_trim()
    if trim is not None:
        trim(0)
