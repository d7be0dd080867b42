"""JPEG previews of indexed images by item id: small thumbnails (many kept in memory) and
the full-size view (scaled to at most `full_size` px; a few kept)."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from PIL import Image

from crossmodal.data.images import ImageLoadError, load_image
from crossmodal.serve.live import NotFoundError


def thumbnail_bytes(item: dict, size: int) -> bytes:
    return _render(*_stamped(item), size)


def full_size_bytes(item: dict, size: int) -> bytes:
    """The item's image, its longest side at most `size` px (never larger than stored)."""
    return _render_large(*_stamped(item), size)


def _stamped(item: dict) -> tuple[str, int]:
    path = Path(item["path"])
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise NotFoundError(f"the image of item '{item['id']}' is no longer on disk: "
                            "re-index it or remove it") from None
    return str(path), stamp


@lru_cache(maxsize=1024)
def _render(path: str, stamp: int, size: int) -> bytes:  # stamp: a changed file is re-read
    return _jpeg(path, size, quality=85)


@lru_cache(maxsize=8)  # up to ~1 MB each
def _render_large(path: str, stamp: int, size: int) -> bytes:
    return _jpeg(path, size, quality=90)


def _jpeg(path: str, size: int, quality: int) -> bytes:
    try:
        # A JPEG decodes at a reduced scale down to >= 2x the target: ask for half the size.
        image = load_image(path, target_size=max(1, size // 2))
    except ImageLoadError as exc:
        raise NotFoundError(f"the image at this item cannot be read: {exc}") from exc
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
