"""MilvusCollection: a collection whose whole state lives in Milvus (crossmodal.collection.
milvus_schema), so any number of processes, on any machines, read and write it at once.

It answers the folder Collection's public surface (open/create/add_paths/add_vectors/remove/
search_*/stats/drop), so the CLI, the server and MCP use either through
crossmodal.collection.targets. There is no row order and no lock: an item is its row in
NAME_items under its id; each change is a few upserts and deletes, acknowledged by Milvus
before the call returns.

Writing order makes a crash or a concurrent reader harmless: an add writes the captions
first and the item row last (the item row is the commit point: a caption whose item row is
missing is never shown), a removal deletes the item row first, then its captions; a caption
row past the item's caption count (left by a crash) is never shown either, and is deleted
by the next write of that item. Two writers of one id: the last upsert wins, whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.collection import hybrid
from crossmodal.collection import milvus_schema as ms
from crossmodal.collection.collection import Hit, normal_target
from crossmodal.collection.derived_searches import DerivedSearches
from crossmodal.collection.ingest import AddReport, Embedded
from crossmodal.collection.model_check import ModelSide
from crossmodal.errors import BadInputError, IndexMismatchError
from crossmodal.index.filters import Filter, parse_filter
from crossmodal.index.metadata import item_metadata
from crossmodal.models.protocol import Encoder
from crossmodal.models.registry import DEFAULT_MODEL, load_encoder
from crossmodal.models.score_thresholds import resolve_min_score

_BATCH = 2_000  # rows per upsert, ids per delete
_GET_BATCH = 10_000  # ids per get: each Strong get waits for a time tick (~200 ms)
_RECORD_KEYS = ("path", "captions", "sha256", "bytes", "mtime_ns", "meta")


@dataclass
class MilvusSettings:
    """The settings record: what the folder index keeps in its manifest."""

    model: str
    model_fingerprint: str | None
    dim: int
    preprocessing: dict
    index_type: str = "flat"
    format: int = ms.FORMAT
    store: dict = field(default_factory=dict)  # not stored: where this one was opened

    def record(self) -> dict:
        return {"model": self.model, "model_fingerprint": self.model_fingerprint,
                "dim": self.dim, "preprocessing": self.preprocessing,
                "index_type": self.index_type, "format": self.format}


class _Count:
    """`len(collection.images)` / `len(collection.texts)` as the folder collection has."""

    def __init__(self, count: Callable[[], int]):
        self._count = count

    def __len__(self) -> int:
        return self._count()


class MilvusCollection(ModelSide, DerivedSearches):
    REBUILD_HINT = "build a new collection for them"

    def __init__(self, address: ms.CollectionAddress, settings: MilvusSettings,
                 encoder: Encoder | None = None):
        self.address = address
        self.path = address.target  # what messages name the collection by
        self.manifest = settings
        settings.store = {"kind": "milvus", "uri": address.client_uri,
                          "collection": address.name}
        self.names = ms.collection_names(address.name)
        self.clock = ms.ReadClock()
        self.notes: list[str] = []
        self._client = ms.connect(address)
        self._closed = False
        self._encoder = encoder
        if encoder is not None:
            self._check_encoder(encoder)
        self.images = _Count(lambda: self._count("items"))
        self.texts = _Count(lambda: self._count("texts"))

    # --- opening ----------------------------------------------------------------------
    @classmethod
    def create(cls, target: str, model: str = DEFAULT_MODEL, index_type: str = "flat",
               index_params: dict | None = None, encoder: Encoder | None = None,
               store: str | dict | None = None) -> MilvusCollection:
        """A new collection at `target` (milvus://HOST:PORT/NAME); an existing one is opened
        (same model only). `index_params` and `store` are the folder's options: unused."""
        address = ms.parse_address(target)
        client = ms.connect(address)
        try:
            if ms.read_settings(client, address) is None:
                encoder = encoder or load_encoder(model)
                settings = MilvusSettings(encoder.model_id, encoder.fingerprint, encoder.dim,
                                          encoder.preprocessing.as_dict(), index_type)
                ms.create_collections(client, address, encoder.dim, index_type,
                                      settings.record())
        finally:
            ms.release(address)
        return cls.open(target, model=model, encoder=encoder)

    @classmethod
    def open(cls, target: str, model: str | None = None,
             encoder: Encoder | None = None) -> MilvusCollection:
        address = ms.parse_address(target)
        client = ms.connect(address)
        try:
            record = ms.read_settings(client, address)
        finally:
            ms.release(address)
        if record is None:
            raise BadInputError(f"no crossmodal collection '{address.name}' at "
                                f"{address.client_uri}: build one with `crossmodal index DIR "
                                f"--into {target}`")
        settings = MilvusSettings(**{k: record[k] for k in (
            "model", "model_fingerprint", "dim", "preprocessing", "index_type", "format")})
        wanted = model or (encoder.model_id if encoder else None)
        if wanted and wanted != settings.model:
            raise IndexMismatchError(
                f"{target} was built with model '{settings.model}', not '{wanted}': search it "
                f"without --model, or build a new collection for '{wanted}'")
        collection = cls(address, settings, encoder)
        for name in collection.names.values():
            collection._client.load_collection(name)
        return collection

    @staticmethod
    def exists(target: str) -> bool:
        address = ms.parse_address(target)
        client = ms.connect(address)
        try:
            return client.has_collection(ms.collection_names(address.name)["items"])
        finally:
            ms.release(address)

    @classmethod
    def model_of(cls, target: str) -> tuple[str, str | None]:
        collection = cls.open(target)
        try:
            return collection.manifest.model, collection.manifest.model_fingerprint
        finally:
            collection.close()

    @classmethod
    def inspect(cls, target: str, verify: bool = False) -> dict:
        collection = cls.open(target)
        try:
            stats = collection.stats()
        finally:
            collection.close()
        if verify:  # no files to check: Milvus keeps its own checksums
            stats.update(verified=True, bad_files=[])
        return stats

    @staticmethod
    def drop(target: str, confirm: Callable[[str], object] | None = None) -> list[str]:
        """Delete both Milvus collections of `target`; `confirm(what)` is asked first."""
        address = ms.parse_address(target)
        client = ms.connect(address)
        try:
            names = [n for n in ms.collection_names(address.name).values()
                     if client.has_collection(n)]
            if not names:
                raise BadInputError(f"no crossmodal collection at {target}: nothing to drop")
            if confirm is not None:
                confirm(f"Milvus collections {', '.join(names)} at {address.client_uri}")
            for name in names:
                client.drop_collection(name)
        finally:
            ms.release(address)
        return []

    def discard(self, remove_folder: bool = True) -> None:
        """Undo `create` when nothing could be added (a collection holding items, which
        another process may have added meanwhile, is kept)."""
        empty = not self._count("items")
        self.close()
        if empty:
            self.drop(self.path)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            ms.release(self.address)

    # --- reading records --------------------------------------------------------------
    def _count(self, role: str) -> int:
        rows = self._client.query(self.names[role], filter="", output_fields=["count(*)"],
                                  **self.clock.read_kwargs())
        return int(rows[0]["count(*)"]) if rows else 0

    def __len__(self) -> int:
        return self._count("items")

    def records(self, item_ids: Sequence[str], strong: bool = False) -> dict[str, dict]:
        """Id -> item record (id, path, captions, ...) of those ids the collection holds."""
        level = {"consistency_level": "Strong"} if strong else self.clock.read_kwargs()
        found: dict[str, dict] = {}
        unique = list(dict.fromkeys(item_ids))
        for start in range(0, len(unique), _GET_BATCH):
            rows = self._client.get(self.names["items"], ids=unique[start:start + _GET_BATCH],
                                    output_fields=[ms.ITEM_FIELD], **level)
            for row in rows:
                found[row["id"]] = {"id": row["id"], **row[ms.ITEM_FIELD]}
        return found

    def __contains__(self, item_id: str) -> bool:
        return bool(self.records([item_id]))

    def item(self, item_id: str) -> dict:
        found = self.records([item_id])
        if not found:
            raise BadInputError(f"no item '{item_id}' in {self.path}")
        return found[item_id]

    def stats(self) -> dict:
        m = self.manifest
        items, texts = self._count("items"), self._count("texts")
        return {"path": self.path, "model": m.model, "dim": m.dim, "index_type": m.index_type,
                "store": {"kind": "milvus", "uri": self.address.client_uri,
                          "collection": self.address.name},
                "items": items, "images": items, "texts": texts, "generation": 0,
                "consistency": f"own writes at once, others' within {self.clock.staleness_ms} ms"}

    def build_lookups(self) -> None:
        """Nothing to build: Milvus looks ids up (the folder collection builds a table)."""

    def compact(self, retrain: bool = False) -> list[str]:
        """Milvus compacts and indexes by itself; kept for the folder collection's callers."""
        return []

    # --- changing ---------------------------------------------------------------------
    def add_paths(self, inputs: Sequence[str | Path], caption_files: Sequence[str | Path] = (),
                  batch_size: int = 32, progress: bool = True,
                  commit_every: int = 4096) -> AddReport:
        """Index images (and captions) under `inputs`: only new or changed files."""
        from crossmodal.collection.milvus_ingest import add_paths

        return add_paths(self, inputs, caption_files, batch_size, progress, commit_every)

    def apply_embedded(self, embedded: list[Embedded], unreadable: set[str],
                       report: AddReport) -> None:
        """Write embedded batches (replacing what is there); drop unreadable items."""
        ids = {meta["id"] for e in embedded for _, meta in e.batch}
        before = self.records(sorted(ids | unreadable), strong=True)
        if unreadable & before.keys():
            self.remove(sorted(unreadable & before.keys()))
        for e in embedded:
            self.write([meta for _, meta in e.batch], e.image_vectors, e.text_vectors, before)
        report.texts += sum(len(e.rows) for e in embedded)
        report.added += len(ids - before.keys())
        report.updated += len(ids & before.keys())

    def add_vectors(self, items: Sequence[dict], image_vectors: np.ndarray,
                    text_vectors: np.ndarray | None = None,
                    skip_existing: bool = False) -> list[str]:
        """As Collection.add_vectors: precomputed vectors; an id already held is an error, or
        skipped with `skip_existing` (checked at Strong level; two writers adding one new id
        at once both succeed, the later one's record kept whole)."""
        items = [{"captions": [], **item} for item in items]
        count = sum(len(item["captions"]) for item in items)
        if text_vectors is None:
            text_vectors = np.zeros((0, self.manifest.dim), np.float32)
        if len(image_vectors) != len(items) or len(text_vectors) != count:
            raise BadInputError(f"{len(items)} items with {count} captions need as many "
                                f"vectors, got {len(image_vectors)} and {len(text_vectors)}")
        if len({item["id"] for item in items}) != len(items):
            raise BadInputError("item ids must be unique within one add")
        for item in items:
            item_metadata(item)  # checks "meta" before anything is written
        clash = self.records([item["id"] for item in items], strong=True)
        if clash and not skip_existing:
            raise BadInputError(f"item ids must be new: {sorted(clash)[:5]} are already "
                                "indexed")
        keep = np.array([item["id"] not in clash for item in items], bool)
        keep_rows = np.array([item["id"] not in clash for item in items
                              for _ in item["captions"]], bool)
        kept = [item for item, ok in zip(items, keep, strict=True) if ok]
        if kept:
            self.write(kept, np.asarray(image_vectors, np.float32)[keep],
                       np.asarray(text_vectors, np.float32)[keep_rows], {})
        return sorted(clash)

    def write(self, items: list[dict], image_vectors: np.ndarray,
              text_vectors: np.ndarray | None, before: dict[str, dict]) -> None:
        """Upsert items: captions first, the item rows last (the commit point), then the
        captions the items' earlier versions had beyond their new count."""
        for item in items:
            if len(str(item["id"])) + 8 > ms.MAX_ID_CHARS:
                raise BadInputError(f"item id {str(item['id'])[:40]!r}... is longer than "
                                    f"{ms.MAX_ID_CHARS - 8} characters")
        text_rows = [{"id": f"{item['id']}#{k}", **item_metadata(item, "text", k),
                      "text": caption}
                     for item in items for k, caption in enumerate(item["captions"])]
        if text_rows:
            for row, vector in zip(text_rows, np.asarray(text_vectors, np.float32),
                                   strict=True):
                row["vector"] = vector
            self._upsert("texts", text_rows)
        self._upsert("items", [
            {"id": item["id"], "vector": vector, **item_metadata(item),
             ms.ITEM_FIELD: {k: item[k] for k in _RECORD_KEYS if item.get(k) is not None}}
            for item, vector in zip(items, np.asarray(image_vectors, np.float32), strict=True)])
        stale = [f"{item['id']}#{k}" for item in items if item["id"] in before
                 for k in range(len(item["captions"]),
                                len(before[item["id"]].get("captions", [])))]
        self._delete("texts", stale)

    def remove(self, item_ids: Sequence[str]) -> list[str]:
        """Remove items (with their captions); returns the ids not found, each once."""
        unique = list(dict.fromkeys(item_ids))
        found = self.records(unique, strong=True)
        self._delete("items", list(found))  # the commit point: the item is gone
        self._delete("texts", [f"{item_id}#{k}" for item_id, record in found.items()
                               for k in range(len(record.get("captions", [])))])
        return [item_id for item_id in unique if item_id not in found]

    def _upsert(self, role: str, rows: list[dict]) -> None:
        for start in range(0, len(rows), _BATCH):
            self._client.upsert(self.names[role], rows[start:start + _BATCH])
        self.clock.wrote()

    def _delete(self, role: str, ids: list[str]) -> None:
        for start in range(0, len(ids), _BATCH):
            self._client.delete(self.names[role], ids=ids[start:start + _BATCH])
        if ids:
            self.clock.wrote()

    # --- searching --------------------------------------------------------------------
    def min_score(self, spec: float | str | None, text: str | None = None) -> float | None:
        return resolve_min_score(spec, self.manifest.model, self.manifest.model_fingerprint,
                                 text)

    @property
    def keywords(self) -> None:
        """Keyword (BM25) search reads a folder index's word index; none is kept here yet."""
        raise BadInputError(f"{self.path} is a Milvus collection: it searches by meaning "
                            "only (--mode vector); keyword and hybrid search need an index "
                            "folder")

    def search_vectors(self, queries: np.ndarray, k: int = 10, target: str = "images",
                       threads: int | None = None, where: str | Filter | None = None,
                       min_score: float | str | None = None) -> list[list[Hit]]:
        """As Collection.search_vectors: Milvus searches with the filter's superset as its
        expression, and each hit is checked against the filter itself (the folder index's
        meaning of every filter), asking again for more while places are left empty."""
        from crossmodal.collection.milvus_search import search

        target = normal_target(target)
        if target not in ("images", "texts"):
            raise BadInputError(f"target must be images or texts, not '{target}'")
        return search(self, np.atleast_2d(np.asarray(queries, np.float32)), k, target,
                      parse_filter(where), self.min_score(min_score))

    def search_text(self, text: str, k: int = 10, target: str = "images",
                    where: str | Filter | None = None, long_text: str | None = None,
                    min_score: float | str | None = None, mode: str | None = None
                    ) -> list[Hit]:
        """As Collection.search_text; `mode` other than vector is refused (`keywords`)."""
        where = parse_filter(where)
        mode = hybrid.parse_mode(mode)
        if mode != "vector":
            self.keywords  # noqa: B018 - raises the one-line reason
        return self.search_vectors(self.text_query(text, long_text), k, target, 1, where,
                                   self.min_score(min_score, text))[0]

    def search_image(self, image: str | Path | bytes | Image.Image, k: int = 10,
                     target: str = "images", where: str | Filter | None = None,
                     min_score: float | str | None = None) -> list[Hit]:
        where = parse_filter(where)
        return self.search_vectors(self.image_query(image), k, target, 1, where, min_score)[0]

    def indexed_query(self, item_id: str) -> tuple[np.ndarray, str]:
        """The stored vector of an item id (its image) or ITEM#K (its K-th caption)."""
        for role, target in (("items", "images"), ("texts", "texts")):
            rows = self._client.get(self.names[role], ids=[item_id], output_fields=["vector"],
                                    **self.clock.read_kwargs())
            if rows:
                return np.asarray(rows[0]["vector"], np.float32)[None, :], target
        raise BadInputError(f"no item or caption '{item_id}' in {self.path}")
