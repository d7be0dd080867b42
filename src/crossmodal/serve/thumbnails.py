"""Small JPEG previews of indexed images, made on first request and kept in memory."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from PIL import Image

from crossmodal.data.images import ImageLoadError, MemoryReservation, load_image
from crossmodal.serve.live import NotFoundError


def thumbnail_bytes(item: dict, size: int, reserve: MemoryReservation | None = None) -> bytes:
    """A JPEG preview; a first one decodes the stored image, holding `reserve` meanwhile."""
    path = Path(item["path"])
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise NotFoundError(f"the image of item '{item['id']}' is no longer on disk: "
                            "re-index it or remove it") from None
    return _render(str(path), stamp, size, reserve)


@lru_cache(maxsize=1024)
def _render(path: str, stamp: int, size: int,  # stamp: a changed file is re-read
            reserve: MemoryReservation | None) -> bytes:
    try:
        image = load_image(path, target_size=size, reserve=reserve)
    except ImageLoadError as exc:
        raise NotFoundError(f"the image at this item cannot be read: {exc}") from exc
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()
