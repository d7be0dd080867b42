"""How a Collection's changes reach the disk: a log record per commit, a generation now and then.

A faiss-backed index folder holds one full generation (vectors, faiss index, items JSON, named
with their checksums by the manifest) and its write-ahead log `wal.<gen>.log` (crossmodal.index
.wal). A commit appends one record with the change (removed item ids; added items with their
vectors): its cost depends on the change, not on the collection. Opening loads the generation
and replays the log. Once the log passes WAL_SHARE of the generation's size (or an HNSW log
has WAL_MAX_GRAPH_ROWS rows to insert on every open, or dead rows pass PURGE_SHARE, or IVF-PQ
retrains) the commit writes a new generation instead, as every commit did before: new files,
an empty log, then the manifest (the commit point), then the old files go.

Commit numbers: `manifest.generation` on disk numbers the full generation; in memory it counts
every commit (the generation plus its log records), so it grows by one per commit either way.
Milvus-backed folders keep no log: every commit writes a (small) generation.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crossmodal.errors import BadInputError, IndexCorruptError
from crossmodal.index import wal
from crossmodal.index.faiss_store import PURGE_SHARE, FaissStore
from crossmodal.index.manifest import Manifest, library_versions
from crossmodal.paths import file_sha256
from crossmodal.storage import LEFTOVER_GRACE_S, atomic_save_json, remove_stale_files

if TYPE_CHECKING:
    from crossmodal.engine import Collection

TARGETS = ("images", "texts")
WAL_SHARE = 0.25  # log bytes, as a share of the generation's, that trigger a new generation
WAL_MIN_BYTES = 1 << 20  # small indexes: no new generation before the log holds this much
WAL_MAX_GRAPH_ROWS = 20_000  # HNSW inserts every open replays (about 1 ms each at 1M rows)
# A generation's files: faiss vectors/index/live rows, Milvus keys/state, the items, the log.
GENERATION_FILE = re.compile(
    r"^(images|texts|items|wal)\.(\d{6})(\.alive|\.ids|\.milvus)?\.(npy|faiss|json|log)$")


@dataclass
class LogState:
    """What of the folder a Collection has applied: its generation and log up to `end`."""

    base: int  # the full generation's number (as the manifest on disk says)
    name: str  # the log's file name; "" when the folder keeps none (Milvus)
    end: int = 0  # bytes of the log applied
    added_rows: int = 0  # vectors added through the log (HNSW replays insert them)

    def stamp(self) -> tuple[int, int]:
        return (self.base, self.end)


def committed_counts(path: Path, manifest: Manifest) -> dict:
    """Items, images and texts as of the last commit, without loading the index (the last
    log record says, else the manifest); for `info` on an index that cannot be opened."""
    with contextlib.suppress(OSError, IndexCorruptError):
        records = wal.read(Path(path) / manifest.log).records if manifest.log else []
        if records and "counts" in records[-1].header:
            return records[-1].header["counts"]
    return manifest.counts


def disk_stamp(path: Path) -> tuple[int, int] | None:
    """(generation, log bytes) committed in the folder now: changes with every commit."""
    try:
        manifest = Manifest.load(path)
        size = (path / manifest.log).stat().st_size if manifest.log else 0
    except (FileNotFoundError, IndexCorruptError):
        return None
    return (manifest.generation, size)


def _faiss_stores(col: Collection) -> list[FaissStore]:
    return [s for s in (col.images, col.texts) if isinstance(s, FaissStore)]


# --- committing -------------------------------------------------------------------------
def commit(col: Collection, compact: bool = False, retrain: bool = False) -> None:
    """Make the pending change durable (the caller holds the folder's lock)."""
    _check_not_bypassed(col)
    for role, store in zip(TARGETS, (col.images, col.texts), strict=True):
        if isinstance(store, FaissStore) and (retrain or store.needs_retraining()):
            before = store.params.get("trained_on")
            if store.retrain():
                col.notes.append(f"retrained the {role} IVF-PQ index on {len(store)} vectors "
                                 f"(it was trained on {before})")
                compact = True
    rebuilt = any(store.rebuilt for store in _faiss_stores(col))
    if compact or rebuilt or not col._log.name or not _append_record(col):
        write_generation(col)
    remove_leftovers(col)


def _index_file(name: str) -> bool:
    """A file a writer makes in the index folder: generation files and atomic-write temps."""
    return bool(GENERATION_FILE.match(name)) or (name.startswith(".") and name.endswith(".tmp"))


def remove_leftovers(col: Collection, min_age_s: float = LEFTOVER_GRACE_S) -> list[Path]:
    """Under the lock, after a commit: delete what killed writers left in the folder (a half
    written generation, temp files) that the manifest does not name, once past the grace
    period; most commits only append to the log, so no generation write would sweep them."""
    named = {entry["name"] for entry in col.manifest.files.values()} | {col.manifest.log}
    return remove_stale_files(col.path, named, min_age_s, _index_file)


def _check_not_bypassed(col: Collection) -> None:
    latest = _committed(col.path)
    if latest is not None and latest.generation != col._log.base:
        raise IndexCorruptError(
            f"{col.path} moved to generation {latest.generation} while this writer held "
            f"generation {col._log.base}: a writer bypassed the folder's lock")


def _committed(path: Path) -> Manifest | None:
    try:
        return Manifest.load(path)
    except FileNotFoundError:
        return None


def _encode_pending(col: Collection) -> tuple[bytes, int]:
    ops, arrays, added = [], [], 0
    for op in col._pending:
        if op[0] == "remove":
            ops.append({"op": "remove", "ids": sorted(op[1])})
            continue
        _, items, image_vectors, text_vectors = op
        ops.append({"op": "add", "items": items})
        texts = np.zeros((0, col.manifest.dim), np.float32) if text_vectors is None \
            else text_vectors
        arrays += [image_vectors, texts]
        added += len(image_vectors) + len(texts)
    header = {"generation": col.manifest.generation + 1, "ops": ops, "counts": _counts(col)}
    return wal.encode_record(header, arrays), added


def _append_record(col: Collection) -> bool:
    """Append the pending change to the log; False when a new generation is due instead."""
    record, added = _encode_pending(col)
    base_bytes = sum(entry["bytes"] for entry in col.manifest.files.values())
    if col._log.end + len(record) > max(WAL_SHARE * base_bytes, WAL_MIN_BYTES):
        return False
    stores = _faiss_stores(col)
    if any(s.kind == "hnsw" for s in stores) and col._log.added_rows + added > \
            WAL_MAX_GRAPH_ROWS:
        return False
    if any(s.tombstones > PURGE_SHARE * max(s.physical_rows, 1) for s in stores):
        return False
    log = col.path / col._log.name
    tail = wal.read(log, col._log.end)
    if tail.records:
        raise IndexCorruptError(f"{log} holds commits this writer never read: a writer "
                                "bypassed the folder's lock")
    if tail.size > col._log.end:
        wal.truncate(log, col._log.end)  # a crashed writer's torn record
    col._log.end = wal.append(log, record)  # the commit point
    col._committed_now()
    col._log.added_rows += added
    col.manifest.generation += 1
    col.manifest.counts = _counts(col)
    return True


def _counts(col: Collection) -> dict:
    return {"items": len(col.items), "images": len(col.images), "texts": len(col.texts)}


def write_generation(col: Collection) -> None:
    """A full new generation and an empty log; the manifest switch is the commit point."""
    generation = col.manifest.generation + 1
    stem = f"{generation:06d}"
    superseded = {entry["name"] for entry in col.manifest.files.values()} | {col.manifest.log}
    try:
        names = _write_files(col, stem)
        manifest = col.manifest
        manifest.log = f"wal.{stem}.log" if manifest.store.get("backend", "faiss") == "faiss" \
            else ""
        if manifest.log:
            wal.create(col.path / manifest.log)
        manifest.generation = generation
        manifest.counts = _counts(col)
        manifest.index_params = col.images.params
        manifest.versions = library_versions()
        manifest.save(col.path)  # the commit point
    except BaseException:
        _remove_unfinished(col.path, generation)
        raise
    col._committed_now()
    col._log = LogState(generation, manifest.log)
    for store in (col.images, col.texts):
        store.committed()
    # The generation just replaced goes now; other leftovers after their grace period.
    for name in superseded - {*names.values(), manifest.log, ""}:
        with contextlib.suppress(OSError):  # committed already: a leftover is no error
            os.unlink(col.path / name)


def _write_files(col: Collection, stem: str) -> dict[str, str]:
    """The generation's vector, index and items files, listed in the manifest (in memory)."""
    names: dict[str, str] = {}
    for role, store in zip(TARGETS, (col.images, col.texts), strict=True):
        for sub, name in store.save(col.path, f"{role}.{stem}").items():
            names[f"{role}.{sub}"] = name
    names["items"] = f"items.{stem}.json"
    atomic_save_json(col.path / names["items"],
                     {"items": col.items, "texts": [list(r) for r in col.text_rows]})
    col.manifest.files = {
        role: {"name": name, "bytes": (col.path / name).stat().st_size,
               "sha256": file_sha256(col.path / name)}
        for role, name in names.items()
    }
    return names


def _remove_unfinished(path: Path, generation: int) -> None:
    """A generation that failed before its commit point: remove the files it wrote, so that
    a full disk gets its room back (unless the manifest did switch to it after all)."""
    with contextlib.suppress(OSError, IndexCorruptError):
        latest = _committed(path)
        if latest is not None and latest.generation >= generation:
            return
        for entry in os.listdir(path):
            found = GENERATION_FILE.match(entry)
            if found and int(found.group(2)) == generation:
                os.unlink(path / entry)


def convert(col: Collection, kind: str, metadata_rows) -> None:
    """New stores of `kind` over the same vectors, then a new generation (the commit point:
    a crash before it leaves the old index as it was)."""
    if col.manifest.store.get("backend", "faiss") != "faiss":
        raise BadInputError(f"{col.path} keeps its vectors in Milvus: build a new index with "
                            f"--index-type {kind} instead of converting this one")
    stores = []
    for role, old in zip(TARGETS, (col.images, col.texts), strict=True):
        new = FaissStore(col.manifest.dim, kind, dict(col.manifest.index_params)
                         if kind == col.manifest.index_type else None)
        if len(old):
            new.add(np.asarray(old.vectors), metadata_rows(role))
        stores.append(new)
    col.images, col.texts = stores
    col.manifest.index_type = kind
    col.notes.append(f"converted {col.path} to a {kind} index")
    commit(col, compact=True)


# --- reading back -----------------------------------------------------------------------
# Catching up is split in two: reading what was committed (log records read and checked, or
# a new generation loaded: the slow part) needs no lease on the collection, only that nothing
# else applies changes to it meanwhile; applying it (the collection's lists and stores change)
# is the part a server does under its exclusive lease, so searches wait only for that.
@dataclass
class Update:
    """What another writer committed since a collection read the folder."""

    records: list[wal.Record]  # records of the same generation's log, in order
    fresh: Collection | None = None  # or the folder loaded again (a new generation)


def read_new_records(col: Collection) -> list[wal.Record]:
    """The log's whole records after what `col` has applied (read and checksummed)."""
    if not col._log.name:
        return []
    return wal.read(col.path / col._log.name, col._log.end).records


def apply_records(col: Collection, records: list[wal.Record]) -> None:
    """Apply records read by read_new_records, in order."""
    for record in records:
        if record.header.get("generation") != col.manifest.generation + 1:
            raise IndexCorruptError(
                f"{col.path / col._log.name}: record {record.header.get('generation')} "
                f"follows commit {col.manifest.generation}")
        _apply(col, record)
        col.manifest.generation += 1
        col._log.end = record.end
    col._committed_now()
    col.manifest.counts = _counts(col)


def replay(col: Collection) -> None:
    """Apply the log's whole records after what `col` has applied (open and catch-up)."""
    apply_records(col, read_new_records(col))


def _apply(col: Collection, record: wal.Record) -> None:
    arrays = iter(record.arrays)
    for op in record.header["ops"]:
        if op["op"] == "remove":
            col._drop_rows({i for i in op["ids"] if i in col._row_of})
        else:
            image_vectors, text_vectors = next(arrays), next(arrays)
            col._add_rows(op["items"], image_vectors, text_vectors)
            col._log.added_rows += len(image_vectors) + len(text_vectors)


def read_update(col: Collection) -> Update | None:
    """Under the folder's lock: what was committed since `col` read the folder (None: no
    index there). Reads and loads; changes nothing in `col`."""
    latest = _committed(col.path)
    if latest is None:
        return None
    if latest.generation == col._log.base and latest.log == col._log.name and \
            _log_size(col) >= col._log.end:
        return Update(read_new_records(col))
    # A new generation; or the log shrank: a record this object read was cut off again by
    # its writer (its fsync failed), so what memory holds was never committed.
    return Update([], type(col)._load(col.path, latest, col._encoder))


def apply_update(col: Collection, update: Update | None) -> bool:
    """Apply what read_update read; True if anything changed."""
    if update is None:
        return False
    if update.fresh is not None:
        col._adopt(update.fresh)
        return True
    apply_records(col, update.records)
    return bool(update.records)


def _log_size(col: Collection) -> int:
    try:
        return (col.path / col._log.name).stat().st_size if col._log.name else 0
    except FileNotFoundError:
        return -1
