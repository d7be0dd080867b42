"""An index that keeps answering searches while items are added or removed.

Readers take the current snapshot (one attribute read) and search it; a snapshot is never
changed after it is published. A writer encodes outside any lock (the slow part), then under
a short writer lock opens a fresh Collection from disk, applies the change, commits it and
publishes that Collection as the new snapshot. A search sees the old or the new index, never
one half-way through a change. Changes committed by another process (`crossmodal index`,
`crossmodal remove`) are picked up within `refresh_s` the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.data.images import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    load_image,
    return_freed_memory,
)
from crossmodal.engine import Collection
from crossmodal.errors import BadInputError
from crossmodal.index.generations import disk_stamp
from crossmodal.item_ids import new_item_id
from crossmodal.models.protocol import Encoder
from crossmodal.storage import atomic_write

log = logging.getLogger("crossmodal.serve")
# Decodes this big leave tens of MB freed in some thread's malloc arena: hand them back.
_BIG_DECODE_PIXELS = 4_000_000
_FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif",
                      "BMP": ".bmp"}


class NotFoundError(BadInputError):
    """An item id the index does not hold (HTTP 404)."""


@dataclass
class Upload:
    """An image sent by a client: its bytes, decoded once."""

    data: bytes
    image: Image.Image
    extension: str

    @classmethod
    def decode(cls, data: bytes, max_pixels: int, target_size: int | None = None,
               slots: threading.Semaphore | None = None) -> Upload:
        """Decode `data`, shrunk to >= 2x `target_size` as it decodes; `slots` bounds how
        many full-size decodes run at once (each holds up to 4 bytes a pixel briefly)."""
        try:
            with slots or contextlib.nullcontext():
                image = load_image(data, max_pixels=max_pixels, target_size=target_size)
            with Image.open(io.BytesIO(data)) as raw:  # the header only
                extension = _FORMAT_EXTENSIONS.get(raw.format or "", "")
                pixels = raw.width * raw.height
            if pixels >= _BIG_DECODE_PIXELS:
                return_freed_memory()
        except ImageLoadError as exc:
            raise BadInputError(f"cannot use the uploaded image: {exc}") from exc
        if extension not in IMAGE_EXTENSIONS:
            raise BadInputError("upload a JPEG, PNG, WebP, GIF or BMP image")
        return cls(data, image, extension)


class LiveCollection:
    def __init__(self, path: str | Path, encoder: Encoder | None = None,
                 uploads_dir: str = "uploads", refresh_s: float = 2.0):
        self.path = Path(path)
        self.refresh_s = refresh_s
        self._stamp = self._manifest_stamp()
        self._snapshot = Collection.open(self.path, encoder=encoder)
        self.encoder = encoder or self._snapshot.encoder
        self.uploads = self.path / uploads_dir
        self._writer = threading.Lock()
        self._checked = time.monotonic()
        self.remove_orphan_uploads()

    def remove_orphan_uploads(self, min_age_s: float = 3600.0) -> list[Path]:
        """Delete stored uploads no item refers to (a server killed between storing a file and
        committing its item); young files may belong to another server's upload in flight."""
        if not self.uploads.is_dir():
            return []
        used = {Path(item["path"]).name for item in self._snapshot.items}
        cutoff = time.time() - min_age_s
        removed = []
        for stored in self.uploads.iterdir():
            with contextlib.suppress(OSError):
                if (stored.is_file() and stored.name not in used
                        and stored.stat().st_mtime < cutoff):
                    stored.unlink()
                    removed.append(stored)
        if removed:
            log.info("removed %d upload files no item refers to", len(removed))
        return removed

    def _manifest_stamp(self) -> tuple[int, int] | None:
        # (generation, log bytes): a commit appends to the log without touching the manifest
        return disk_stamp(self.path)

    @property
    def snapshot(self) -> Collection:
        """The current published index; keep the reference for the whole of one request."""
        now = time.monotonic()
        if now - self._checked >= self.refresh_s:
            self._checked = now
            if self._manifest_stamp() != self._stamp:
                self._reload_if_idle()
        return self._snapshot

    def _reload_if_idle(self) -> None:
        """Another process committed: publish its version (unless a write is under way)."""
        if not self._writer.acquire(blocking=False):
            return
        try:
            stamp = self._manifest_stamp()  # read first: at worst, one reload too many
            self._snapshot, self._stamp = self._fresh(), stamp
        except Exception as exc:  # a half-removed index: keep serving the last good one
            log.warning("could not reload %s: %s", self.path, exc)
        finally:
            self._writer.release()

    def _fresh(self) -> Collection:
        return Collection.open(self.path, encoder=self.encoder)

    def _publish(self, collection: Collection) -> None:
        self._snapshot, self._stamp = collection, self._manifest_stamp()

    def add_upload(self, upload: Upload, captions: Sequence[str],
                   item_id: str | None = None) -> dict:
        """Store an uploaded image under the index's uploads folder and index it."""
        captions = [c.strip() for c in captions if c and c.strip()]
        digest = hashlib.sha256(upload.data).hexdigest()
        item_id = new_item_id(item_id or f"uploads/{digest[:16]}{upload.extension}")
        if item_id in self._snapshot:
            raise BadInputError(f"an item '{item_id}' is already indexed: remove it first "
                                "or choose another id")
        # The slow part runs without any lock: searches and other uploads go on meanwhile.
        image_vector = self.encoder.encode_images([upload.image])
        text_vectors = self.encoder.encode_texts(captions) if captions else None
        stored = self.uploads / f"{digest}{upload.extension}"
        item = {"id": item_id, "path": str(stored), "captions": captions, "sha256": digest,
                "bytes": len(upload.data)}
        with self._writer:
            writer = self._fresh()
            fresh_file = not stored.exists()
            if fresh_file:
                atomic_write(stored, lambda handle: handle.write(upload.data))
            try:
                writer.add_vectors([item], np.asarray(image_vector, np.float32), text_vectors)
            except BaseException:
                if fresh_file:  # nothing indexed refers to it
                    stored.unlink(missing_ok=True)
                raise
            self._publish(writer)
        return writer.item(item_id)

    def remove(self, item_id: str) -> dict:
        with self._writer:
            writer = self._fresh()
            if item_id not in writer:
                raise NotFoundError(f"no item '{item_id}' in the index")
            item = writer.item(item_id)
            writer.remove([item_id])
            self._publish(writer)
        stored = Path(item["path"])
        still_used = any(i["path"] == item["path"] for i in writer.items)
        if stored.parent == self.uploads and not still_used:
            with contextlib.suppress(OSError):
                stored.unlink()
        return item
