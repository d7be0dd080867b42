"""What an index folder holds in memory: its items, caption rows, the two vector stores, how
far into the folder's log it has read, and the changes not yet committed.

Every change to that state goes through `_drop_rows` and `_add_rows`, so the log record a
commit writes (crossmodal.collection.commits) is exactly what the stores and lists were given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.collection.keyword_state import KeywordState
from crossmodal.errors import IndexCorruptError
from crossmodal.index.manifest import Manifest
from crossmodal.index.metadata import item_metadata
from crossmodal.index.protocol import VectorStore
from crossmodal.index.rows import RowIndex

TARGETS = ("images", "texts")


@dataclass
class LogState:
    """What of the folder a Collection has applied: its generation and log up to `end`."""

    base: int  # the full generation's number (as the manifest on disk says)
    name: str  # the log's file name; "" when the folder keeps none (Milvus)
    end: int = 0  # bytes of the log applied
    added_rows: int = 0  # vectors added through the log (HNSW replays insert them)

    def stamp(self) -> tuple[int, int]:
        return (self.base, self.end)


class IndexState:
    """The in-memory state of one index folder, and the only code that changes it."""

    def __init__(self, path: Path, manifest: Manifest, items: list[dict],
                 text_rows: list[tuple[str, int]], images: VectorStore, texts: VectorStore):
        self.path = Path(path)
        self.manifest = manifest
        self.items = items
        self.text_rows = text_rows
        self.images = images
        self.texts = texts
        self._log = LogState(manifest.generation, manifest.log)  # what of the folder we hold
        self._pending: list[tuple] = []  # changes since the last commit, for the log record
        # True from the first change in memory until the folder holds it: a failure between
        # the two puts memory back at the last commit (crossmodal.collection.writer).
        self._uncommitted = False
        self.notes: list[str] = []  # what commits did besides the change (IVF-PQ retrained)
        # The keyword index follows every change below (crossmodal.collection.keyword_state).
        self.keywords = KeywordState(self.path, manifest.files, manifest.generation)
        self._reindex()

    def stores(self) -> tuple[VectorStore, VectorStore]:
        return (self.images, self.texts)

    def counts(self) -> dict:
        return {"items": len(self.items), "images": len(self.images), "texts": len(self.texts)}

    def _committed_now(self) -> None:
        """The folder holds what memory holds (a commit point passed, or a replay ended)."""
        self._pending.clear()
        self._uncommitted = False

    def _adopt(self, fresh: IndexState) -> None:
        """Take over `fresh`'s state (the same folder, loaded later)."""
        old = self.stores()
        self.manifest, self.items, self.text_rows = fresh.manifest, fresh.items, fresh.text_rows
        self.images, self.texts, self._log = fresh.images, fresh.texts, fresh._log
        self.keywords = fresh.keywords
        self._committed_now()
        self._reindex()
        for store in old:
            store.close()

    # --- lookups ----------------------------------------------------------------------
    def _reindex(self) -> None:
        """Forget the lookups: rebuilt on first use (once per load; changes update them)."""
        self._rows: RowIndex | None = None
        self._caption_lookup: dict[str, int] | None = None

    @property
    def _row_of(self) -> RowIndex:
        """Item id -> position; also the positions of an item's captions."""
        if self._rows is None:
            self._rows = RowIndex(self.items)
            if self._rows.caption_rows != len(self.text_rows):
                raise IndexCorruptError(
                    f"{self.path}: {self._rows.caption_rows} captions listed by the items, "
                    f"{len(self.text_rows)} caption rows")
        return self._rows

    @property
    def _text_row_of(self) -> dict[str, int]:
        """'ITEM#K' -> caption position (only `search_like` on a caption needs it)."""
        if self._caption_lookup is None:
            self._caption_lookup = {f"{item}#{k}": row
                                    for row, (item, k) in enumerate(self.text_rows)}
        return self._caption_lookup

    # --- changes ----------------------------------------------------------------------
    def _drop_rows(self, item_ids: set[str]) -> None:
        """Remove items and their captions; the stores only mark the rows dead, so this costs
        two lookups and two list deletions per item, not a pass over the collection."""
        rows = self._row_of
        present = sorted((rows[i], i) for i in item_ids if i in rows)
        item_rows = [row for row, _ in present]
        spans = [rows.captions_of(item_id) for _, item_id in present]
        text_rows = np.array([t for span in spans for t in span], np.int64)
        if item_rows:
            self.images.remove(np.array(item_rows, np.int64))
        if len(text_rows):
            self.texts.remove(text_rows)
        if len(item_rows) > 64:  # many: one pass beats many shifts of the lists
            gone = set(item_rows)
            self.items = [item for row, item in enumerate(self.items) if row not in gone]
            dead = set(text_rows.tolist())
            self.text_rows = [r for row, r in enumerate(self.text_rows) if row not in dead]
        else:
            for row, span in zip(reversed(item_rows), reversed(spans), strict=True):
                del self.items[row]
                del self.text_rows[span.start : span.stop]
        self._pending.append(("remove", sorted(item_ids)))
        self._uncommitted = True
        self.keywords.removed(item_ids)
        rows.remove(item_ids)
        self._caption_lookup = None

    def _add_rows(self, items: list[dict], image_vectors: np.ndarray,
                  text_vectors: np.ndarray | None) -> None:
        """Append items (each with "captions") and their vectors; every add goes through here,
        so the log records exactly what the stores and lists were given."""
        rows = [(item["id"], k) for item in items for k in range(len(item["captions"]))]
        if rows:
            self.texts.add(text_vectors, [item_metadata(item, "text", k) for item in items
                                          for k in range(len(item["captions"]))])
        self.images.add(image_vectors, [item_metadata(item) for item in items])
        if self._rows is not None:  # extend it; rebuilding per batch is quadratic
            self._rows.append(items)
        self._caption_lookup = None
        self.items.extend(items)
        self.text_rows.extend(rows)
        self.keywords.added(items)
        self._pending.append(("add", items, image_vectors, text_vectors if rows else None))
        self._uncommitted = True


def metadata_rows(items: list[dict], text_rows: list[tuple[str, int]]):
    """Per-store metadata rows of the generation just loaded, made only when a faiss store
    first needs them (the collection's lists change afterwards: keep copies of these)."""
    items, text_rows = list(items), list(text_rows)

    def rows(role: str) -> list[dict]:
        if role == "images":
            return [item_metadata(item) for item in items]
        by_id = {item["id"]: item for item in items}
        return [item_metadata(by_id[item_id], "text", k) for item_id, k in text_rows]
    return rows
