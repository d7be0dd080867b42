"""An index that keeps answering searches while items are added or removed.

The server holds one Collection in memory for its whole life, so a change costs what the
change costs (a log record, a few vectors), not a reload of the index (seconds at 1M items).
Searches take a shared read lease on it; a change takes the exclusive lease for the short
time it mutates memory and appends its log record. A search therefore sees the index before
or after a change, never half-way. Encoding (the slow part of an upload or a text query)
runs outside any lease.

Changes committed by another process (`crossmodal index`, `crossmodal remove`) are picked up
within `refresh_s`, and always before this server changes the index itself (the Collection's
writer rule reads them back under the folder's lock): log records are read and checked
outside the lease and applied in place under it; a whole new generation is loaded beside the
current one (in a thread of its own when a search noticed it) and swapped in. Searches wait
for the applying or the swap only, never for the reading.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.collection import hybrid
from crossmodal.collection.collection import Collection, Filter, Hit
from crossmodal.collection.ocr_ingest import OCR_SIDE, with_text
from crossmodal.data.exif import read_photo_info
from crossmodal.data.images import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    MemoryReservation,
    image_header,
    load_image,
    return_freed_memory,
)
from crossmodal.data.ocr import TextReader
from crossmodal.data.perceptual_hash import image_hashes
from crossmodal.errors import BadInputError, IndexWriteError, write_failed
from crossmodal.item_ids import new_item_id
from crossmodal.models.protocol import Encoder
from crossmodal.serve.rwlock import ReadWriteLock
from crossmodal.storage import LEFTOVER_GRACE_S, atomic_write, remove_stale_files

log = logging.getLogger("crossmodal.serve")
# Decodes this big leave tens of MB freed in some thread's malloc arena: hand them back.
_BIG_DECODE_PIXELS = 4_000_000
_FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif",
                      "BMP": ".bmp"}


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a generation loads. Its items are millions of new
    containers (none in a cycle), which set off full collections of the whole heap, each
    stopping every thread, searches included, for hundreds of ms at 200k items (and making
    the load itself 2x slower)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
               reserve: MemoryReservation | None = None) -> Upload:
        """Decode `data`, shrunk to >= 2x `target_size` as it decodes; `reserve(nbytes)`
        (serve.budget) is held around the decode with what the header says it may allocate.
        Any image the decoders cannot take is a BadInputError saying why."""
        try:
            image = load_image(data, max_pixels=max_pixels, target_size=target_size,
                               reserve=reserve)
            image_type, width, height = image_header(data)
            extension = _FORMAT_EXTENSIONS.get(image_type or "", "")
            if width * height >= _BIG_DECODE_PIXELS:
                return_freed_memory()
        except ImageLoadError as exc:
            raise BadInputError(f"cannot use the uploaded image: {exc}") from exc
        if extension not in IMAGE_EXTENSIONS:
            raise BadInputError("upload a JPEG, PNG, WebP, GIF or BMP image")
        return cls(data, image, extension)


class LiveCollection:
    def __init__(self, path: str | Path, encoder: Encoder | None = None,
                 uploads_dir: str = "uploads", refresh_s: float = 2.0,
                 reader: TextReader | None = None):
        self.path = Path(path)
        self.reader = reader  # reads the text in each upload (serve --ocr)
        self.refresh_s = refresh_s
        self._lease = ReadWriteLock()
        self._writer = threading.Lock()  # one changing thread; it alone mutates _collection
        self._collection = self._opened(encoder)
        self.encoder = encoder or self._collection.encoder
        self.uploads = self.path / uploads_dir
        self._checked = time.monotonic()
        self.remove_orphan_uploads()

    def _opened(self, encoder: Encoder | None) -> Collection:
        with _collector_paused():
            collection = Collection.open(self.path, encoder=encoder)
            collection.build_lookups()  # now, not in the first request that changes the index
        collection.change_guard = self._lease.writing
        return collection

    def remove_orphan_uploads(self, min_age_s: float = LEFTOVER_GRACE_S) -> list[Path]:
        """Delete stored uploads no item refers to (a server killed between storing a file and
        committing its item); young files may belong to another server's upload in flight."""
        if not self.uploads.is_dir():
            return []
        # Under the folder's lock, on its latest commit: another server may be committing an
        # item that uses one of these files right now (see _forget_if_unused).
        with self._writer, self._collection.locked():
            used = {os.path.basename(item["path"]) for item in self._collection.items}
            removed = remove_stale_files(self.uploads, used, min_age_s)
        if removed:
            log.info("removed %d upload files no item refers to", len(removed))
        return removed

    # --- reading --------------------------------------------------------------------------
    @contextlib.contextmanager
    def reading(self) -> Iterator[Collection]:
        """A read lease on the index: it does not change until the block ends (keep blocks
        short: a change waits for them). Picks up other processes' commits now and then."""
        now = time.monotonic()
        if now - self._checked >= self.refresh_s or self._collection.stale:
            self._checked = now
            stamp = self._collection.disk_stamp()
            if stamp != self._collection.stamp():
                self._refresh_if_idle(stamp)
        with self._lease.reading():
            if self._collection.stale:  # memory may hold a change that failed to commit
                raise IndexWriteError("the index is being read back after a failed write: "
                                      "try again shortly")
            yield self._collection

    def search_text(self, text: str, k: int = 10, target: str = "images",
                    long_text: str | None = None, mode: str | None = None,
                    min_score: float | None = None, where: Filter | None = None) -> list[Hit]:
        """`mode`: vector, keyword or hybrid (crossmodal.collection.hybrid); `min_score`: a
        cosine cut-off, applied to the vector ranking before any fusion."""
        mode = hybrid.parse_mode(mode)
        hybrid.check_min_score(mode, min_score)
        vector = None if mode == "keyword" else \
            self._collection.text_query(text, long_text)  # the encoder: outside the lease
        with self.reading() as collection:
            return hybrid.search(collection, text, vector, k, target, where, min_score, mode)

    def query_note(self, text: str) -> str | None:
        """A note when the query's language is one the index's model does not read."""
        return self._collection.query_note(text)

    def search_image(self, image: Image.Image, k: int = 10, target: str = "images",
                     where: Filter | None = None) -> list[Hit]:
        vector = self._collection.image_query(image)
        with self.reading() as collection:
            return collection.search_vectors(vector, k, target, threads=1, where=where)[0]

    def item(self, item_id: str) -> dict:
        """A copy of the item's record; NotFoundError if the index does not hold it."""
        with self.reading() as collection:
            if item_id not in collection:
                raise NotFoundError(f"no item '{item_id}' in the index")
            return dict(collection.item(item_id))

    # --- following other processes --------------------------------------------------------
    def _refresh_if_idle(self, stamp: tuple[int, int] | None) -> None:
        """Another process committed: follow it (unless this server is changing the index,
        which reads those commits back anyway). Log records are read and applied in this
        thread, searches waiting only while they are applied; a whole new generation loads in
        a thread of its own (seconds at 1M items), so not even this search waits for it,
        unless what we hold cannot be served at all (stale after a failed write)."""
        if not self._writer.acquire(blocking=False):
            return
        current = self._collection
        if stamp is None or stamp[0] == current.stamp()[0] or current.stale:
            self._follow_then_release()
            return
        try:
            threading.Thread(target=self._follow_then_release, name="crossmodal-follow",
                             daemon=True).start()
        except BaseException:
            self._writer.release()
            raise

    def _follow_then_release(self) -> None:
        try:
            self._follow_disk()
        finally:
            self._writer.release()

    def _follow_disk(self) -> None:
        """Holding _writer: catch up with the folder, or keep serving what we hold (a change
        then catches up under the folder's lock anyway)."""
        try:
            self._catch_up_with_disk()
        except Exception as exc:  # a generation replaced while read, a half-removed index
            log.warning("could not reload %s: %s", self.path, exc)

    def _catch_up_with_disk(self) -> None:
        """Replay new log records in place (read and checked outside the lease, applied
        under it: the collection's change_guard), or load a new generation beside the current
        one (slow: searches go on meanwhile) and swap it in."""
        current = self._collection
        if current.refresh():
            return
        del current  # from here the old generation is referred to by _collection only
        self._swap(self._opened(self.encoder))

    def _swap(self, fresh: Collection) -> None:
        """Serve `fresh` from now on; the old generation is freed here, and its pages given
        back to the OS (else glibc keeps them, and RSS stays at two generations for good)."""
        with self._lease.writing():
            old, self._collection = self._collection, fresh
        old.close()
        del old
        return_freed_memory()

    # --- changing -------------------------------------------------------------------------
    def add_upload(self, upload: Upload, captions: Sequence[str],
                   item_id: str | None = None) -> dict:
        """Store an uploaded image under the index's uploads folder and index it."""
        captions = [c.strip() for c in captions if c and c.strip()]
        digest = hashlib.sha256(upload.data).hexdigest()
        item_id = new_item_id(item_id or f"uploads/{digest[:16]}{upload.extension}")
        with self.reading() as collection:
            if item_id in collection:
                raise BadInputError(f"an item '{item_id}' is already indexed: remove it "
                                    "first or choose another id")
        stored = self.uploads / f"{digest}{upload.extension}"
        item = {"id": item_id, "path": str(stored), "captions": captions, "sha256": digest,
                "file_sha256": digest, "bytes": len(upload.data),
                "phash": image_hashes(upload.image)}
        photo = read_photo_info(upload.data)  # when and where, as an indexed file has them
        if photo:
            item["photo"] = photo
        # The slow part runs without any lock: searches and other uploads go on meanwhile.
        if self.reader is not None:
            self._read_text(upload, item)
        image_vector = self.encoder.encode_images([upload.image])
        captions = item["captions"]
        text_vectors = self.encoder.encode_texts(captions) if captions else None
        _store(stored, upload.data)  # mostly here, outside the lock: a write takes a while
        with self._writer:
            self._follow_disk()  # a new generation is loaded before the lease, not under it
            collection = self._collection
            with collection.locked():
                try:
                    # Again under the folder's lock: another server may have deleted it since
                    # (no committed item used it); while we hold the lock none can.
                    _store(stored, upload.data)
                    # the id check again, on the latest generation, under the folder's lock
                    collection.add_vectors([item], np.asarray(image_vector, np.float32),
                                           text_vectors)
                except BaseException:
                    self._forget_if_unused(collection, stored)
                    raise
            return dict(collection.item(item_id))

    def _read_text(self, upload: Upload, item: dict) -> None:
        """The upload's read text as its "ocr" captions; a photo the reader fails on is
        added without them (and logged), as `crossmodal index --ocr` does."""
        try:  # decoded again, larger: the upload's image is shrunk for the encoder
            read = self.reader.captions(load_image(upload.data, target_size=OCR_SIDE))
        except Exception as exc:  # noqa: BLE001 - the upload itself is fine
            log.warning("could not read the text in %s: %s", item["id"], exc)
            return
        with_text(item, read)

    def remove(self, item_id: str) -> dict:
        with self._writer:
            self._follow_disk()
            collection = self._collection
            with collection.locked():
                if item_id not in collection:
                    raise NotFoundError(f"no item '{item_id}' in the index")
                item = dict(collection.item(item_id))
                collection.remove([item_id])
                self._forget_if_unused(collection, Path(item["path"]))
        return item

    def _forget_if_unused(self, collection: Collection, stored: Path) -> None:
        """Delete a stored upload no committed item refers to. Called under the folder's
        lock, caught up with its latest commit, so the decision holds for every process:
        two ids (in any server) may share one file, and an upload commits only after checking
        its file exists under the same lock."""
        if stored.parent.resolve() != self.uploads.resolve():
            return
        # A suffix test over the paths as stored, whoever spelled the folder: cheap, and it
        # keeps a file rather than lose one.
        if any(other["path"].endswith(stored.name) for other in collection.items):
            return
        with contextlib.suppress(OSError):
            stored.unlink()


def _store(stored: Path, data: bytes) -> None:
    """Write an upload's bytes under their content-hash name, unless already there."""
    if stored.exists():
        return
    try:
        atomic_write(stored, lambda handle: handle.write(data))
    except OSError as exc:
        raise write_failed(exc) from exc
