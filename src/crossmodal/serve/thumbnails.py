"""JPEG previews of indexed images by item id: small thumbnails (many kept in memory) and
the full-size view (scaled to at most `full_size` px; a few kept)."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from PIL import Image

from crossmodal.data.images import ImageLoadError, MemoryReservation, load_image
from crossmodal.serve.live import NotFoundError


def thumbnail_bytes(item: dict, size: int, reserve: MemoryReservation | None = None) -> bytes:
    """A JPEG preview; a first one decodes the stored image, holding `reserve` meanwhile."""
    return _render(*_stamped(item), size, reserve)


def full_size_bytes(item: dict, size: int, reserve: MemoryReservation | None = None) -> bytes:
    """The item's image, its longest side at most `size` px (never larger than stored)."""
    return _render_large(*_stamped(item), size, reserve)


def _stamped(item: dict) -> tuple[str, int]:
    path = Path(item["path"])
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise NotFoundError(f"the image of item '{item['id']}' is no longer on disk: "
                            "re-index it or remove it") from None
    return str(path), stamp


@lru_cache(maxsize=1024)
def _render(path: str, stamp: int, size: int,  # stamp: a changed file is re-read
            reserve: MemoryReservation | None) -> bytes:
    return _jpeg(path, size, size, 85, reserve)


@lru_cache(maxsize=8)  # up to ~1 MB each
def _render_large(path: str, stamp: int, size: int,
                  reserve: MemoryReservation | None) -> bytes:
    # A JPEG decodes at a reduced scale down to >= 2x the target: ask for half the size.
    return _jpeg(path, max(1, size // 2), size, 90, reserve)


def _jpeg(path: str, target_size: int, size: int, quality: int,
          reserve: MemoryReservation | None) -> bytes:
    try:
        image = load_image(path, target_size=target_size, reserve=reserve)
    except ImageLoadError as exc:
        raise NotFoundError(f"the image at this item cannot be read: {exc}") from exc
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
