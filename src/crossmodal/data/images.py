"""Safe image loading: formats, EXIF orientation, a pixel cap read before decoding."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"})
# 64 MP: far above any photo we embed at 224 px, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageLoadError(Exception):
    """An input that is not a usable image; the message says why."""


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_image(
    source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS, target_size: int | None = None
) -> Image.Image:
    """Decode an image to RGB, refusing bombs before decoding and applying EXIF orientation.

    `target_size` lets JPEG decode at a reduced scale (draft mode) when the image is much
    larger than the model input: the same pixels at a fraction of the cost.
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
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"corrupt or truncated image: {exc}") from exc
