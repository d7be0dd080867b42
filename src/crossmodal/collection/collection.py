"""Collection: the one API the CLI and HTTP use to open, add to, remove from and search an index.

On disk a collection is a folder:
    manifest.json                 model id + fingerprint, dim, preprocessing, versions, files
    images.<gen>.npy / .faiss     image vectors (row i = item i) and their faiss index
    texts.<gen>.npy / .faiss      caption vectors (row j = text_rows[j])
    *.<gen>.alive.npy             which rows are live, when some are removed but still held
    items.<gen>.json              item metadata and the caption rows
    wal.<gen>.log                 commits since the generation: one checksummed record each
A commit appends a record to the log (its cost depends on the change, not on the collection);
now and then one writes a new generation of files, then the manifest, and the old generation
and its log are removed after (crossmodal.collection.commits). A crash at any moment leaves
the last committed state readable; a commit that fails (a full disk) puts memory back at the
last commit too (crossmodal.collection.writer). What the folder holds in memory lives in
crossmodal.collection.state; `index/` is the store library below it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.collection import commits, hybrid, ingest, ocr_search
from crossmodal.collection.derived_searches import DerivedSearches
from crossmodal.collection.hits import Hit, normal_target
from crossmodal.collection.ingest import AddReport
from crossmodal.collection.model_check import ModelSide
from crossmodal.collection.state import TARGETS, IndexState, metadata_rows
from crossmodal.collection.writer import FolderWriter, remove_new_folder
from crossmodal.data.ocr import TextReader
from crossmodal.errors import BadInputError, IndexCorruptError, IndexMismatchError
from crossmodal.index.filters import Filter, parse_filter
from crossmodal.index.manifest import MANIFEST, Manifest, read_items
from crossmodal.index.metadata import item_metadata
from crossmodal.index.protocol import VectorStore
from crossmodal.index.stores import (
    describe_store,
    drop_store,
    load_store,
    new_stores,
    parse_store_spec,
)
from crossmodal.models.protocol import Encoder
from crossmodal.models.registry import DEFAULT_MODEL, load_encoder
from crossmodal.models.score_thresholds import resolve_min_score


class Collection(ModelSide, DerivedSearches, FolderWriter):
    """An index folder plus the encoder that built it."""

    def __init__(self, path: Path, manifest: Manifest, items: list[dict],
                 text_rows: list[tuple[str, int]], images: VectorStore, texts: VectorStore,
                 encoder: Encoder | None = None):
        super().__init__(path, manifest, items, text_rows, images, texts)
        self._encoder = encoder
        if encoder is not None:
            self._check_encoder(encoder)

    # --- opening ----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, model: str = DEFAULT_MODEL, index_type: str = "flat",
               index_params: dict | None = None, encoder: Encoder | None = None,
               store: str | dict | None = None) -> Collection:
        """A new empty collection; an existing one at `path` is opened (same model only).

        `store`: faiss (default), milvus (Milvus Lite in the folder) or milvus:URI."""
        path = Path(path)
        if (path / MANIFEST).is_file():
            return cls.open(path, model=model, encoder=encoder)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise BadInputError(f"{path} exists and is not a crossmodal index: choose a new folder")
        record = parse_store_spec(store)
        encoder = encoder or load_encoder(model)
        manifest = Manifest(
            model=encoder.model_id, model_fingerprint=encoder.fingerprint, dim=encoder.dim,
            preprocessing=encoder.preprocessing.as_dict(), index_type=index_type,
            index_params=index_params or {}, store=record,
        )
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        try:
            images, texts = new_stores(record, path, TARGETS, encoder.dim, index_type,
                                       index_params)
            manifest.index_params = images.params
            collection = cls(path, manifest, [], [], images, texts, encoder)
            with collection._writing():
                collection._commit()
        except BaseException:  # Milvus unreachable, a full disk: leave no half-made index
            remove_new_folder(path, created)
            raise
        return collection

    @classmethod
    def open(cls, path: str | Path, model: str | None = None,
             encoder: Encoder | None = None) -> Collection:
        """Open an index; asking for another model than the one that built it is an error."""
        path = Path(path)
        for attempt in range(3):  # a writer may replace a generation between our reads
            try:
                manifest = Manifest.load(path)
            except FileNotFoundError:
                raise BadInputError(
                    f"no crossmodal index at {path}: build one with "
                    f"`crossmodal index DIR --into {path}`"
                ) from None
            wanted = model or (encoder.model_id if encoder else None)
            if wanted and wanted != manifest.model:
                raise IndexMismatchError(
                    f"{path} was built with model '{manifest.model}', not '{wanted}': search it "
                    f"without --model, or build a new index for '{wanted}'"
                )
            try:
                return cls._load(path, manifest, encoder)
            except FileNotFoundError:
                if attempt == 2:
                    raise IndexCorruptError(
                        f"files named by {path / MANIFEST} are missing") from None
                time.sleep(0.05)
        raise AssertionError("unreachable")

    @classmethod
    def _load(cls, path: Path, manifest: Manifest, encoder: Encoder | None) -> Collection:
        def files_of(role: str) -> dict[str, str]:
            prefix = f"{role}."
            return {k[len(prefix):]: v["name"] for k, v in manifest.files.items()
                    if k.startswith(prefix)}

        items, text_rows = read_items(path, manifest)
        rows = metadata_rows(items, text_rows)
        stores = [
            load_store(manifest.store, path, files_of(role), manifest.dim, manifest.index_type,
                       manifest.index_params, lambda role=role: rows(role))
            for role in TARGETS
        ]
        if len(items) != len(stores[0]) or len(text_rows) != len(stores[1]):
            raise IndexCorruptError(f"{path}: metadata and vectors disagree in length")
        collection = cls(path, manifest, items, text_rows, *stores, encoder=encoder)
        commits.replay(collection)
        return collection

    def _load_again(self, manifest: Manifest) -> IndexState:
        return type(self)._load(self.path, manifest, self._encoder)

    @staticmethod
    def exists(path: str | Path) -> bool:
        """Whether `path` holds an index (its manifest)."""
        return (Path(path) / MANIFEST).is_file()

    @staticmethod
    def model_of(path: str | Path) -> tuple[str, str | None]:
        """(model id, weights fingerprint) of the index at `path`, from its manifest alone
        (a cold search loads the model while the index opens)."""
        manifest = Manifest.load(Path(path))
        return manifest.model, manifest.model_fingerprint

    def discard(self, remove_folder: bool) -> None:
        """Undo `create` (nothing could be added): the store's collections outside the
        folder (Milvus), and the folder's files, the folder itself when `remove_folder`."""
        self.close()
        drop_store(self.manifest.store, self.path, TARGETS)
        remove_new_folder(self.path, remove_folder)

    @classmethod
    def inspect(cls, path: str | Path, verify: bool = False) -> dict:
        """What the index holds (stats()); `verify` checks every file against its checksum
        ("verified", "bad_files"), and then an index that cannot be opened is described from
        its manifest (the last commit's counts, the bad files, the error) rather than raised."""
        path = Path(path)
        try:
            collection = cls.open(path)
        except IndexCorruptError as exc:
            if not verify:
                raise
            manifest = Manifest.load(path)  # the checksums say which file is bad
            return {"path": str(path), "model": manifest.model,
                    **commits.committed_counts(path, manifest),
                    "generation": manifest.generation, "verified": False,
                    "bad_files": manifest.verify(path), "error": str(exc)}
        stats = collection.stats()
        if verify:
            stats["bad_files"] = collection.manifest.verify(path)
            stats["verified"] = not stats["bad_files"]
        return stats

    @staticmethod
    def drop(path: str | Path, confirm: Callable[[str], object] | None = None) -> list[str]:
        """Delete the index at `path`: what its store keeps outside the folder (Milvus
        collections), then the folder; `confirm(what)` is asked first (it raises to stop).
        Returns the names kept because another folder owns them (this was a copy)."""
        path = Path(path)
        try:
            record = Manifest.load(path).store
        except FileNotFoundError:
            raise BadInputError(f"no crossmodal index at {path}: nothing to drop") from None
        if confirm is not None:
            confirm(" and ".join(filter(None, (str(path), describe_store(record)))))
        kept = drop_store(record, path, TARGETS)
        shutil.rmtree(path)
        return kept

    # --- bookkeeping ------------------------------------------------------------------
    def build_lookups(self) -> None:
        """Build the id -> position table now (~1 s at 1M items) rather than on first use."""
        self._row_of  # noqa: B018 (the property builds it)

    def __len__(self) -> int:
        return len(self.items)

    def close(self) -> None:
        """Release the stores' connections (Milvus); a faiss-backed collection holds none."""
        for store in self.stores():
            store.close()

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._row_of

    def item(self, item_id: str) -> dict:
        if item_id not in self._row_of:
            raise BadInputError(f"no item '{item_id}' in {self.path}")
        return self.items[self._row_of[item_id]]

    def stats(self) -> dict:
        return {
            "path": str(self.path), "model": self.manifest.model, "dim": self.manifest.dim,
            "index_type": self.manifest.index_type,
            "store": {k: v for k, v in self.manifest.store.items() if k != "collection"},
            "items": len(self.items),
            "images": len(self.images), "texts": len(self.texts),
            "generation": self.manifest.generation,
            "log": {"file": self._log.name, "bytes": self._log.end,
                    "commits": self.manifest.generation - self._log.base},
            "removed_rows_held": sum(s.tombstones for s in self.stores()),
        }

    def stamp(self) -> tuple[int, int]:
        """(generation, log bytes) this object holds: equal to `disk_stamp()` when nothing
        was committed since, by this process or another."""
        return self._log.stamp()

    def disk_stamp(self) -> tuple[int, int] | None:
        """(generation, log bytes) the folder holds now (None: no index there any more)."""
        return commits.disk_stamp(self.path)

    def refresh(self) -> bool:
        """Follow other processes' log records in place, without the folder's lock (reading
        only): read and checked first, applied under `change_guard`, so searches wait only
        for the applying. False when the folder moved to a new generation: open it again."""
        disk, held = self.disk_stamp(), self.stamp()
        if disk is None or disk == held:
            return True
        if disk[0] != held[0] or disk[1] < held[1]:
            return False
        records = commits.read_new_records(self)  # whole checksummed records only
        with self.change_guard():
            commits.apply_records(self, records)
        return True

    def compact(self, retrain: bool = False) -> list[str]:
        """Write a full generation now (folding the log in, dropping removed rows past a
        share); `retrain` retrains IVF-PQ on all vectors. Returns what was done besides."""
        with self._writing():
            before = len(self.notes)
            self._commit(compact=True, retrain=retrain)
        return self.notes[before:]

    def convert(self, index_type: str) -> None:
        """Rebuild the search index as another type (faiss store), committed atomically."""
        with self._writing():
            self._uncommitted = True
            commits.convert(self, index_type, metadata_rows(self.items, self.text_rows))

    # --- adding and removing ----------------------------------------------------------
    def remove(self, item_ids: Sequence[str]) -> list[str]:
        """Remove items (with their captions); returns the ids not found, each once."""
        unique = list(dict.fromkeys(item_ids))  # an id given twice is removed once
        with self._writing():  # decided on the latest generation, not on what we opened
            missing = [i for i in unique if i not in self._row_of]
            present = set(unique) - set(missing)
            if present:
                self._drop_rows(present)
                self._commit()
        return missing

    def add_paths(self, inputs: Sequence[str | Path], caption_files: Sequence[str | Path] = (),
                  batch_size: int = 32, progress: bool = True, commit_every: int = 4096,
                  ocr: TextReader | None = None) -> AddReport:
        """Index images (and captions) under `inputs`; only new or changed files are embedded
        (crossmodal.collection.ingest: embedding outside the lock, each batch applied to the latest
        generation). With `ocr`, the text in each photo becomes its captions of source "ocr"."""
        return ingest.add_paths(self, inputs, caption_files, batch_size, progress, commit_every,
                                ocr)

    def apply_embedded(self, embedded: list[ingest.Embedded], unreadable: set[str],
                       report: AddReport) -> None:
        """Under the lock, on the latest generation: replace what is there, append, commit."""
        with self._writing():
            ids = {meta["id"] for e in embedded for _, meta in e.batch}
            present = {i for i in ids | unreadable if i in self._row_of}  # not O(collection)
            if present:
                self._drop_rows(present)
            for e in embedded:
                self._add_rows([meta for _, meta in e.batch], e.image_vectors, e.text_vectors)
            if embedded or present:
                self._commit()
            # Counted once committed: a failed commit added nothing.
            report.texts += sum(len(e.rows) for e in embedded)
            report.added += len(ids - present)
            report.updated += len(ids & present)

    def add_vectors(self, items: Sequence[dict], image_vectors: np.ndarray,
                    text_vectors: np.ndarray | None = None,
                    skip_existing: bool = False) -> list[str]:
        """Add precomputed embeddings (made by this collection's model) without encoding.

        `items[i]` needs "id" and "path", optionally "captions"; its captions' vectors are
        the next rows of `text_vectors`, in order. An id already in the index (checked on the
        latest generation, under the lock) is an error, or skipped with `skip_existing`;
        returns the ids skipped.
        """
        items = [{"captions": [], **item} for item in items]
        rows = [(item["id"], k) for item in items for k in range(len(item["captions"]))]
        text_vectors = np.zeros((0, self.manifest.dim), np.float32) if text_vectors is None \
            else text_vectors
        if len(image_vectors) != len(items) or len(text_vectors) != len(rows):
            raise BadInputError(f"{len(items)} items with {len(rows)} captions need as many "
                                f"vectors, got {len(image_vectors)} and {len(text_vectors)}")
        if len({item["id"] for item in items}) != len(items):
            raise BadInputError("item ids must be unique within one add")
        for item in items:
            item_metadata(item)  # checks "meta" before anything is written
        with self._writing():
            clash = {item["id"] for item in items if item["id"] in self._row_of}
            if clash and not skip_existing:
                raise BadInputError(f"item ids must be new: {sorted(clash)[:5]} are already "
                                    "indexed")
            keep = np.array([item["id"] not in clash for item in items], bool)
            keep_rows = np.array([item_id not in clash for item_id, _ in rows], bool)
            items = [item for item, kept in zip(items, keep, strict=True) if kept]
            if items:
                self._add_rows(items, np.asarray(image_vectors, np.float32)[keep],
                               np.asarray(text_vectors, np.float32)[keep_rows])
                self._commit()
        return sorted(clash)

    # --- searching --------------------------------------------------------------------
    def _store(self, target: str) -> VectorStore:
        target = normal_target(target)
        if target not in TARGETS:
            raise BadInputError(f"target must be one of {', '.join(TARGETS)}, not '{target}'")
        return self.images if target == "images" else self.texts

    def search_vectors(self, queries: np.ndarray, k: int = 10, target: str = "images",
                       threads: int | None = None, where: str | Filter | None = None,
                       min_score: float | str | None = None) -> list[list[Hit]]:
        """`where` filters by metadata (crossmodal.index.metadata), e.g. 'folder = "beach"';
        hits scoring below `min_score` are dropped (a cosine, or auto / p90 / p50: the
        model's calibrated cut-offs, crossmodal.models.score_thresholds)."""
        cutoff, where = self.min_score(min_score), parse_filter(where)
        scores, positions = self._store(target).search(np.atleast_2d(queries), k, threads, where)
        hits = [
            [self._hit(target, int(pos), float(score), rank)
             for rank, (score, pos) in enumerate(zip(srow, prow, strict=True), 1)
             if pos >= 0 and (cutoff is None or score >= cutoff)]
            for srow, prow in zip(scores, positions, strict=True)
        ]
        if normal_target(target) != "images":
            return hits
        # Photos whose read text matches the query come first (collection.ocr_search).
        return ocr_search.with_text_matches(self, queries, hits, k, threads, where, cutoff)

    def min_score(self, spec: float | str | None, text: str | None = None) -> float | None:
        """The cosine cut-off `spec` names for this index's model (None: keep every hit); a
        text query's language picks the table where the model is calibrated per language."""
        return resolve_min_score(spec, self.manifest.model, self.manifest.model_fingerprint,
                                 text)

    def _hit(self, target: str, position: int, score: float, rank: int) -> Hit:
        if target == "images":
            item = self.items[position]
            return Hit(rank, score, item["id"], "image", item["id"], item["path"],
                       captions=item["captions"], photo=item.get("photo") or {})
        item_id, k = self.text_rows[position]
        item = self.items[self._row_of[item_id]]
        return Hit(rank, score, f"{item_id}#{k}", "text", item_id, item["path"],
                   text=item["captions"][k], captions=item["captions"],
                   photo=item.get("photo") or {})

    def search_text(self, text: str, k: int = 10, target: str = "images",
                    where: str | Filter | None = None, long_text: str | None = None,
                    min_score: float | str | None = None, mode: str | None = None
                    ) -> list[Hit]:
        """The `k` best images (or captions: `target="texts"`) for a text query, optionally
        among the rows matching `where`; `long_text` picks how a text over the model's
        context is embedded (head, tail, chunks, sentences; see models/long_text.py);
        `mode`: vector, keyword (BM25 over captions and file names) or hybrid (both, fused;
        crossmodal.collection.hybrid)."""
        where = parse_filter(where)  # a bad filter fails before the encoder runs
        mode = hybrid.parse_mode(mode)
        hybrid.check_min_score(mode, min_score)
        if not text or not text.strip():
            raise BadInputError("the query text is empty")
        # One faiss thread: right after torch's forward pass, two OpenMP pools spinning on
        # two cores slow each other down (measured: 7 ms vs 18 ms p50 end to end).
        cutoff = None if mode == "keyword" else self.min_score(min_score, text)
        vector = None if mode == "keyword" else self.text_query(text, long_text)
        return hybrid.search(self, text, vector, k, target, where, cutoff, mode)

    def search_image(self, image: str | Path | bytes | Image.Image, k: int = 10,
                     target: str = "images", where: str | Filter | None = None,
                     min_score: float | str | None = None) -> list[Hit]:
        """The `k` best images (or captions: `target="texts"`) for a query image: a path,
        encoded bytes or a PIL image."""
        where = parse_filter(where)
        return self.search_vectors(self.image_query(image), k, target, 1, where, min_score)[0]

    def indexed_query(self, item_id: str) -> tuple[np.ndarray, str]:
        """The stored (1, dim) vector of an item id (its image) or `ITEM#K` (its K-th
        caption), and the store it lives in ("images" or "texts")."""
        if item_id in self._row_of:
            return self.images.get_vectors([self._row_of[item_id]]), "images"
        if item_id in self._text_row_of:
            return self.texts.get_vectors([self._text_row_of[item_id]]), "texts"
        raise BadInputError(f"no item or caption '{item_id}' in {self.path}")

