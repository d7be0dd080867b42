"""Safe image loading: formats, EXIF orientation, a pixel cap read before decoding."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"})
# 64 MP: far above any photo we embed at 224 px, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 64_000_000


# Modes Image.reduce works on directly; others (palette, CMYK...) go through RGB first.
_REDUCIBLE_MODES = frozenset({"L", "RGB", "I", "F"})


class ImageLoadError(Exception):
    """An input that is not a usable image; the message says why."""


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_image(
    source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS, target_size: int | None = None
) -> Image.Image:
    """Decode an image to RGB, refusing bombs before decoding and applying EXIF orientation.

    `target_size` lets JPEG decode at a reduced scale (draft mode) when the image is much
    larger than the model input: the same pixels at a fraction of the cost. Other formats
    decode in full, then shrink (still >= 2x `target_size`) before any copy is made, so one
    decode holds the full-size buffer once and only briefly.
    """
    try:
        if isinstance(source, bytes):
            if not source:
                raise ImageLoadError("empty data")
            image = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if path.stat().st_size == 0:
                raise ImageLoadError("zero-byte file")
            image = Image.open(path)
        width, height = image.size  # read from the header; nothing decoded yet
        if width * height > max_pixels:
            raise ImageLoadError(
                f"{width}x{height} = {width * height:,} pixels exceeds the cap of {max_pixels:,}"
            )
        if getattr(image, "is_animated", False):
            image.seek(0)  # first frame of a GIF/WebP animation
        if target_size and image.format == "JPEG":
            image.draft("RGB", (target_size * 2, target_size * 2))
        image.load()
        if target_size:
            image = _reduced(image, 2 * target_size)
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError("file not found") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"decompression bomb refused: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError("not a recognised image format") from exc
    except OSError as exc:
        if exc.filename is not None:  # the system refused the file; its message holds the path
            raise ImageLoadError(f"cannot read the file: {exc.strerror}") from exc
        raise ImageLoadError(f"corrupt or truncated image: {exc}") from exc
    except (SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"corrupt or truncated image: {exc}") from exc


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
