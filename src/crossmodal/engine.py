"""Collection: the one API the CLI and HTTP use to open, add to, remove from and search an index.

On disk a collection is a folder:
    manifest.json                 model id + fingerprint, dim, preprocessing, versions, files
    images.<gen>.npy / .faiss     image vectors (row i = item i) and their faiss index
    texts.<gen>.npy / .faiss      caption vectors (row j = text_rows[j])
    items.<gen>.json              item metadata and the caption rows
Each commit writes a new generation of files, then the manifest; old generations are removed
after. A crash at any moment leaves the previous manifest and its files intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from crossmodal.data.files import ItemSource, collect_items
from crossmodal.data.images import ImageLoadError, load_image
from crossmodal.data.loader import iter_image_batches
from crossmodal.errors import BadInputError, IndexCorruptError, IndexMismatchError
from crossmodal.index.filters import Filter, parse_filter
from crossmodal.index.manifest import MANIFEST, Manifest, library_versions
from crossmodal.index.metadata import item_metadata
from crossmodal.index.protocol import VectorStore
from crossmodal.index.storage import atomic_save_json
from crossmodal.index.stores import load_store, new_stores, parse_store_spec
from crossmodal.models.protocol import Encoder
from crossmodal.models.registry import DEFAULT_MODEL, load_encoder
from crossmodal.paths import file_sha256

TARGETS = ("images", "texts")
_GENERATION_FILE = re.compile(r"^(images|texts|items)\.(\d{6})\.(npy|faiss|json)$")


@dataclass
class Hit:
    rank: int
    score: float
    id: str  # item id for an image, "ITEM#K" for the K-th caption of an item
    kind: str  # "image" or "text"
    item_id: str
    path: str
    text: str | None = None
    captions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Embedded:
    """A batch of new or changed items with their vectors, not yet applied to the index."""

    batch: list[tuple[ItemSource, dict]]
    image_vectors: np.ndarray
    text_vectors: np.ndarray | None
    rows: list[tuple[str, int]]  # (item id, caption number) of each text vector


@dataclass
class AddReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    texts: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    truncated: list[tuple[str, int]] = field(default_factory=list)  # (text id, tokens)
    log_path: Path | None = None


def _content_hash(path: Path, captions: Sequence[str]) -> str:
    digest = hashlib.sha256(file_sha256(path).encode())
    digest.update(json.dumps(list(captions), ensure_ascii=False).encode())
    return digest.hexdigest()


class Collection:
    """An index folder plus the encoder that built it."""

    def __init__(self, path: Path, manifest: Manifest, items: list[dict],
                 text_rows: list[tuple[str, int]], images: VectorStore, texts: VectorStore,
                 encoder: Encoder | None = None):
        self.path = Path(path)
        self.manifest = manifest
        self.items = items
        self.text_rows = text_rows
        self.images = images
        self.texts = texts
        self._encoder = encoder
        self._reindex()
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
        path.mkdir(parents=True, exist_ok=True)
        images, texts = new_stores(record, path, TARGETS, encoder.dim, index_type, index_params)
        manifest.index_params = images.params
        collection = cls(path, manifest, [], [], images, texts, encoder)
        with collection._writing():
            collection._commit()
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

        meta = json.loads((path / manifest.files["items"]["name"]).read_text(encoding="utf-8"))
        text_rows = [tuple(row) for row in meta["texts"]]
        rows = _metadata_rows(meta["items"], text_rows)
        stores = [
            load_store(manifest.store, path, files_of(role), manifest.dim, manifest.index_type,
                       manifest.index_params, lambda role=role: rows(role))
            for role in TARGETS
        ]
        if len(meta["items"]) != len(stores[0]) or len(text_rows) != len(stores[1]):
            raise IndexCorruptError(f"{path}: metadata and vectors disagree in length")
        return cls(path, manifest, meta["items"], text_rows, *stores, encoder=encoder)

    # --- the encoder ------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            encoder = load_encoder(self.manifest.model)
            self._check_encoder(encoder)
            self._encoder = encoder
        return self._encoder

    def _check_encoder(self, encoder: Encoder) -> None:
        m = self.manifest
        if encoder.model_id != m.model or encoder.dim != m.dim:
            raise IndexMismatchError(
                f"{self.path} holds {m.dim}-d vectors of '{m.model}'; the encoder given is "
                f"'{encoder.model_id}' ({encoder.dim}-d)"
            )
        if encoder.fingerprint != m.model_fingerprint:
            raise IndexMismatchError(
                f"{self.path} was built with other weights or preprocessing of '{m.model}' "
                f"(fingerprint {m.model_fingerprint}, now {encoder.fingerprint}): rebuild it "
                "into a new folder with `crossmodal index`"
            )

    # --- bookkeeping ------------------------------------------------------------------
    def _reindex(self) -> None:
        self._row_of = {item["id"]: row for row, item in enumerate(self.items)}
        self._text_row_of = {f"{item}#{k}": row for row, (item, k) in enumerate(self.text_rows)}

    def __len__(self) -> int:
        return len(self.items)

    def close(self) -> None:
        """Release the stores' connections (Milvus); a faiss-backed collection holds none."""
        for store in (self.images, self.texts):
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
        }

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer at a time per index folder (other processes wait), and every change is
        applied to the latest committed generation: whatever another writer committed since
        this object was loaded is read back first, so no writer overwrites another's work."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._catch_up()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _committed_manifest(self) -> Manifest | None:
        try:
            return Manifest.load(self.path)
        except FileNotFoundError:
            return None

    def _catch_up(self) -> None:
        """Under the lock: load the committed state if it is not the one in memory."""
        latest = self._committed_manifest()
        if latest is None or (latest.generation, latest.files) == (
                self.manifest.generation, self.manifest.files):
            return
        fresh = type(self)._load(self.path, latest, self._encoder)
        for store in (self.images, self.texts):
            store.close()
        self.manifest, self.items, self.text_rows = fresh.manifest, fresh.items, fresh.text_rows
        self.images, self.texts = fresh.images, fresh.texts
        self._reindex()

    def _commit(self) -> None:
        latest = self._committed_manifest()  # compare-and-swap: callers hold _writing()
        if latest is not None and latest.generation != self.manifest.generation:
            raise IndexCorruptError(
                f"{self.path} moved to generation {latest.generation} while this writer held "
                f"generation {self.manifest.generation}: a writer bypassed the folder's lock")
        generation = self.manifest.generation + 1
        stem = f"{generation:06d}"
        names: dict[str, str] = {}
        for role, store in zip(TARGETS, (self.images, self.texts), strict=True):
            for sub, name in store.save(self.path, f"{role}.{stem}").items():
                names[f"{role}.{sub}"] = name
        names["items"] = f"items.{stem}.json"
        atomic_save_json(self.path / names["items"],
                         {"items": self.items, "texts": [list(r) for r in self.text_rows]})
        self.manifest.files = {
            role: {"name": name, "bytes": (self.path / name).stat().st_size,
                   "sha256": file_sha256(self.path / name)}
            for role, name in names.items()
        }
        self.manifest.generation = generation
        self.manifest.counts = {"items": len(self.items), "images": len(self.images),
                                "texts": len(self.texts)}
        self.manifest.index_params = self.images.params
        self.manifest.versions = library_versions()
        self.manifest.save(self.path)  # the commit point
        for store in (self.images, self.texts):
            store.committed()
        current = set(names.values())
        for entry in os.listdir(self.path):
            stale = _GENERATION_FILE.match(entry) and entry not in current
            if stale or (entry.startswith(".") and entry.endswith(".tmp")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path / entry)

    # --- adding and removing ----------------------------------------------------------
    def _drop_rows(self, item_ids: set[str]) -> None:
        image_rows = np.array([self._row_of[i] for i in item_ids if i in self._row_of], np.int64)
        text_rows = np.array(
            [row for row, (item, _) in enumerate(self.text_rows) if item in item_ids], np.int64
        )
        if len(image_rows):
            self.images.remove(image_rows)
        if len(text_rows):
            self.texts.remove(text_rows)
        self.items = [item for item in self.items if item["id"] not in item_ids]
        self.text_rows = [row for row in self.text_rows if row[0] not in item_ids]
        self._reindex()

    def remove(self, item_ids: Sequence[str]) -> list[str]:
        """Remove items (with their captions); returns the ids not found."""
        with self._writing():  # decided on the latest generation, not on what we opened
            missing = [i for i in item_ids if i not in self._row_of]
            present = set(item_ids) - set(missing)
            if present:
                self._drop_rows(present)
                self._commit()
        return missing

    def _plan(self, sources: list[ItemSource], report: AddReport) -> list[tuple[ItemSource, dict]]:
        """Which sources are new or changed; unchanged ones are counted and left alone."""
        todo = []
        for source in sources:
            try:
                stat = source.path.stat()
            except OSError as exc:  # vanished or unreadable since the folder was walked
                report.skipped.append((str(source.path), f"cannot read: {exc.strerror}"))
                continue
            meta = {"id": source.id, "path": str(source.path), "captions": source.captions,
                    "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            old = self.items[self._row_of[source.id]] if source.id in self._row_of else None
            if old is not None and old["captions"] == source.captions and (
                (old.get("bytes"), old.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns)
            ):
                report.unchanged += 1
                continue
            try:
                meta["sha256"] = _content_hash(source.path, source.captions)
            except OSError as exc:
                report.skipped.append((str(source.path), f"cannot read: {exc.strerror}"))
                continue
            if old is not None and old.get("sha256") == meta["sha256"]:
                report.unchanged += 1
                continue
            todo.append((source, meta))
        return todo

    def add_paths(self, inputs: Sequence[str | Path], caption_files: Sequence[str | Path] = (),
                  batch_size: int = 32, progress: bool = True,
                  commit_every: int = 4096) -> AddReport:
        """Index images (and captions) under `inputs`; only new or changed files are embedded.

        Embedding runs outside the folder's lock, so other writers (a server taking uploads)
        are not held up; each commit takes the lock, reads the latest generation and applies
        the embedded batch to it."""
        collected = collect_items(list(inputs), list(caption_files))
        report = AddReport(skipped=list(collected.skipped))
        encoder = self.encoder
        with self._writing():
            todo = self._plan(collected.items, report)
        pending: list[_Embedded] = []
        unreadable: set[str] = set()  # changed files that no longer decode: drop old vectors
        bar = tqdm(total=len(todo), desc="embedding", unit="img", disable=not progress)
        for positions, images, failures in iter_image_batches(
            [source.path for source, _ in todo], batch_size,
            target_size=encoder.preprocessing.size,
        ):
            for position, reason in failures:
                report.skipped.append((str(todo[position][0].path), reason))
                unreadable.add(todo[position][0].id)
            if positions:
                pending.append(self._embed([todo[p] for p in positions], images, report))
            bar.update(len(positions) + len(failures))
            if sum(len(e.batch) for e in pending) >= commit_every:
                self._apply(pending, set(), report)
                pending = []
        bar.close()
        if pending or unreadable:
            self._apply(pending, unreadable, report)
        report.log_path = self._write_log(report)
        return report

    def _embed(self, batch: list[tuple[ItemSource, dict]], images: list[Image.Image],
               report: AddReport) -> _Embedded:
        encoder = self.encoder
        texts = [caption for source, _ in batch for caption in source.captions]
        rows = [(meta["id"], k) for source, meta in batch for k in range(len(source.captions))]
        text_vectors = None
        if texts:
            for (item_id, k), length in zip(rows, encoder.text_lengths(texts), strict=True):
                if length > encoder.context_length:
                    report.truncated.append((f"{item_id}#{k}", length))
            text_vectors = encoder.encode_texts(texts)
        return _Embedded(batch, encoder.encode_images(images), text_vectors, rows)

    def _apply(self, embedded: list[_Embedded], unreadable: set[str], report: AddReport) -> None:
        """Under the lock, on the latest generation: replace what is there, append, commit."""
        with self._writing():
            ids = {meta["id"] for e in embedded for _, meta in e.batch}
            present = (ids | unreadable) & set(self._row_of)
            if present:
                self._drop_rows(present)
            for e in embedded:
                self._append(e, report)
            report.added += len(ids - present)
            report.updated += len(ids & present)
            if embedded or present:
                self._commit()

    def _append(self, embedded: _Embedded, report: AddReport) -> None:
        if embedded.text_vectors is not None:
            self.texts.add(embedded.text_vectors, _caption_metadata(embedded.batch))
        self.images.add(embedded.image_vectors,
                        [item_metadata(meta) for _, meta in embedded.batch])
        for _, meta in embedded.batch:  # extend the lookups; a full _reindex per batch is quadratic
            self._row_of[meta["id"]] = len(self.items)
            self.items.append(meta)
        for item_id, k in embedded.rows:
            self._text_row_of[f"{item_id}#{k}"] = len(self.text_rows)
            self.text_rows.append((item_id, k))
        report.texts += len(embedded.rows)

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
            rows = [row for row, kept in zip(rows, keep_rows, strict=True) if kept]
            if items:
                self.images.add(np.asarray(image_vectors)[keep],
                                [item_metadata(item) for item in items])
            if rows:
                self.texts.add(np.asarray(text_vectors)[keep_rows],
                               [item_metadata(item, "text", k) for item in items
                                for k in range(len(item["captions"]))])
            if items:
                self.items.extend(items)
                self.text_rows.extend(rows)
                self._reindex()
                self._commit()
        return sorted(clash)

    def _write_log(self, report: AddReport) -> Path | None:
        if not report.skipped and not report.truncated:
            return None
        logs = self.path / "logs"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = logs / f"index-{stamp}.json"
        atomic_save_json(path, {
            "skipped": [{"input": what, "reason": why} for what, why in report.skipped],
            "truncated": [{"text": t, "tokens": n} for t, n in report.truncated],
            "context_length": self.encoder.context_length,
        })
        return path

    # --- searching --------------------------------------------------------------------
    def _store(self, target: str) -> VectorStore:
        if target not in TARGETS:
            raise BadInputError(f"target must be one of {', '.join(TARGETS)}, not '{target}'")
        return self.images if target == "images" else self.texts

    def search_vectors(self, queries: np.ndarray, k: int = 10, target: str = "images",
                       threads: int | None = None,
                       where: str | Filter | None = None) -> list[list[Hit]]:
        """`where` filters by metadata (crossmodal.index.metadata), e.g. 'folder = "beach"'."""
        scores, positions = self._store(target).search(np.atleast_2d(queries), k, threads,
                                                       parse_filter(where))
        return [
            [self._hit(target, int(pos), float(score), rank)
             for rank, (score, pos) in enumerate(zip(srow, prow, strict=True), 1) if pos >= 0]
            for srow, prow in zip(scores, positions, strict=True)
        ]

    def _hit(self, target: str, position: int, score: float, rank: int) -> Hit:
        if target == "images":
            item = self.items[position]
            return Hit(rank, score, item["id"], "image", item["id"], item["path"],
                       captions=item["captions"])
        item_id, k = self.text_rows[position]
        item = self.items[self._row_of[item_id]]
        return Hit(rank, score, f"{item_id}#{k}", "text", item_id, item["path"],
                   text=item["captions"][k], captions=item["captions"])

    def search_text(self, text: str, k: int = 10, target: str = "images",
                    where: str | Filter | None = None) -> list[Hit]:
        if not text or not text.strip():
            raise BadInputError("the query text is empty")
        where = parse_filter(where)  # a bad filter fails before the encoder runs
        # One faiss thread: right after torch's forward pass, two OpenMP pools spinning on
        # two cores slow each other down (measured: 7 ms vs 18 ms p50 end to end).
        return self.search_vectors(self.encoder.encode_texts([text.strip()]), k, target, 1,
                                   where)[0]

    def search_image(self, image: str | Path | bytes | Image.Image, k: int = 10,
                     target: str = "images", where: str | Filter | None = None) -> list[Hit]:
        where = parse_filter(where)
        if not isinstance(image, Image.Image):
            try:
                image = load_image(image)
            except ImageLoadError as exc:
                raise BadInputError(f"cannot use query image: {exc}") from exc
        return self.search_vectors(self.encoder.encode_images([image]), k, target, 1, where)[0]

    def search_like(self, item_id: str, k: int = 10, target: str | None = None,
                    where: str | Filter | None = None) -> list[Hit]:
        """Items similar to an indexed one: an item id (image) or `ITEM#K` (its K-th caption)."""
        if item_id in self._row_of:
            vector, own = self.images.get_vectors([self._row_of[item_id]]), "images"
        elif item_id in self._text_row_of:
            vector, own = self.texts.get_vectors([self._text_row_of[item_id]]), "texts"
        else:
            raise BadInputError(f"no item or caption '{item_id}' in {self.path}")
        target = target or own
        hits = self.search_vectors(vector, k + 1, target, where=where)[0]
        hits = [h for h in hits if h.id != item_id][:k]  # the query itself is no answer
        for rank, hit in enumerate(hits, 1):
            hit.rank = rank
        return hits


def _caption_metadata(batch: list[tuple[ItemSource, dict]]) -> list[dict]:
    return [item_metadata(meta, "text", k) for source, meta in batch
            for k in range(len(source.captions))]


def _metadata_rows(items: list[dict], text_rows: list[tuple[str, int]]):
    """Per-store metadata rows of the generation just loaded, made only when a faiss store
    first needs them (the collection's lists change afterwards: keep copies of these)."""
    items, text_rows = list(items), list(text_rows)

    def rows(role: str) -> list[dict]:
        if role == "images":
            return [item_metadata(item) for item in items]
        by_id = {item["id"]: item for item in items}
        return [item_metadata(by_id[item_id], "text", k) for item_id, k in text_rows]
    return rows
