"""The server's view of a collection that lives in Milvus (milvus://HOST:PORT/NAME).

Unlike a folder (crossmodal.serve.live) there is nothing to follow or reload: every search
reads Milvus, at the collection's read level (this process's own changes at once, other
processes' within crossmodal.collection.milvus_schema.STALENESS_MS), and every change is a
few acknowledged upserts or deletes. So any number of servers, on any machines, serve and
change one collection; none holds state of its own beyond the loaded encoder.

Uploaded images are kept under the uploads folder (`--uploads-dir`: a folder every replica
shares, e.g. a network volume, so each can show every item's thumbnail), under their content
hash; removing an item leaves its file (another replica may be adding an item with the same
content at that moment, and no lock spans replicas).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.collection import hybrid
from crossmodal.collection.collection import Filter, Hit
from crossmodal.collection.targets import open_collection
from crossmodal.errors import BadInputError, write_failed
from crossmodal.item_ids import new_item_id
from crossmodal.models.protocol import Encoder
from crossmodal.serve.live import NotFoundError, Upload
from crossmodal.storage import atomic_write


class MilvusLive:
    def __init__(self, target: str, encoder: Encoder | None = None,
                 uploads_dir: str = "uploads"):
        self.path = target
        self._collection = open_collection(target, encoder=encoder)
        self.encoder = encoder or self._collection.encoder
        self.uploads = Path(uploads_dir).expanduser().absolute()

    @contextlib.contextmanager
    def reading(self) -> Iterator:
        """The collection (the folder server's read lease; here nothing to hold)."""
        yield self._collection

    def search_text(self, text: str, k: int = 10, target: str = "images",
                    long_text: str | None = None, mode: str | None = None,
                    min_score: float | None = None, where: Filter | None = None) -> list[Hit]:
        """As LiveCollection.search_text (keyword and hybrid modes are refused here)."""
        mode = hybrid.parse_mode(mode)
        hybrid.check_min_score(mode, min_score)
        vector = None if mode == "keyword" else self._collection.text_query(text, long_text)
        return hybrid.search(self._collection, text, vector, k, target, where, min_score, mode)

    def search_image(self, image: Image.Image, k: int = 10, target: str = "images",
                     where: Filter | None = None) -> list[Hit]:
        vector = self._collection.image_query(image)
        return self._collection.search_vectors(vector, k, target, threads=1, where=where)[0]

    def query_note(self, text: str) -> str | None:
        return self._collection.query_note(text)

    def item(self, item_id: str) -> dict:
        found = self._collection.records([item_id])
        if not found:
            raise NotFoundError(f"no item '{item_id}' in the index")
        return found[item_id]

    def add_upload(self, upload: Upload, captions: Sequence[str],
                   item_id: str | None = None) -> dict:
        """Store an uploaded image under the uploads folder and index it; an id already
        indexed is refused (checked at Strong level just before the write)."""
        captions = [c.strip() for c in captions if c and c.strip()]
        digest = hashlib.sha256(upload.data).hexdigest()
        item_id = new_item_id(item_id or f"uploads/{digest[:16]}{upload.extension}")
        if self._collection.records([item_id], strong=True):
            raise BadInputError(f"an item '{item_id}' is already indexed: remove it first or "
                                "choose another id")
        image_vector = self.encoder.encode_images([upload.image])
        text_vectors = self.encoder.encode_texts(captions) if captions else None
        stored = self.uploads / f"{digest}{upload.extension}"
        if not stored.exists():
            try:
                atomic_write(stored, lambda handle: handle.write(upload.data))
            except OSError as exc:
                raise write_failed(exc) from exc
        item = {"id": item_id, "path": str(stored), "captions": captions, "sha256": digest,
                "bytes": len(upload.data)}
        self._collection.add_vectors([item], np.asarray(image_vector, np.float32), text_vectors)
        return dict(item)

    def remove(self, item_id: str) -> dict:
        item = self.item(item_id)
        if self._collection.remove([item_id]):
            raise NotFoundError(f"no item '{item_id}' in the index")  # removed meanwhile
        return item
