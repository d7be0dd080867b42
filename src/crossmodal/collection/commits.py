"""The commit protocol: how a Collection's changes reach the disk (a log record per commit, a
generation now and then) and how another writer's commits are read back.

A faiss-backed index folder holds one full generation (vectors, faiss index, items JSON, the
keyword index derived from the items, named with their checksums by the manifest) and its
write-ahead log `wal.<gen>.log` (crossmodal.index.wal). A commit appends one record with the
change (removed item ids; added items with their vectors): its cost depends on the change,
not on the collection. Opening loads the generation and replays the log. Once the log passes
WAL_SHARE of the generation's size, or a store would rather be saved whole
(VectorStore.wants_full_save: an HNSW log with too many rows to insert on every open, too
many removed rows held, IVF-PQ retrained), the commit writes a new generation instead: new
files, an empty log, then the manifest (the commit point), then the old files go.

Commit numbers: `manifest.generation` on disk numbers the full generation; in memory it counts
every commit (the generation plus its log records), so it grows by one per commit either way.
A store that keeps no log (Milvus: `keeps_log` is False) writes a (small) generation every
commit.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmodal.collection.keyword_state import ROLE as KEYWORDS
from crossmodal.collection.state import TARGETS, IndexState, LogState
from crossmodal.errors import IndexCorruptError
from crossmodal.index import wal
from crossmodal.index.manifest import Manifest, library_versions
from crossmodal.paths import file_sha256
from crossmodal.storage import LEFTOVER_GRACE_S, atomic_save_json, remove_stale_files

WAL_SHARE = 0.25  # log bytes, as a share of the generation's, that trigger a new generation
WAL_MIN_BYTES = 1 << 20  # small indexes: no new generation before the log holds this much
# A generation's files: faiss vectors/index/live rows, Milvus keys/state, the items, the
# keyword index, the log.
GENERATION_FILE = re.compile(
    r"^(images|texts|items|keywords|wal)\.(\d{6})(\.alive|\.ids|\.milvus)?"
    r"\.(npy|faiss|json|npz|log)$")


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


# --- committing -------------------------------------------------------------------------
def commit(col: IndexState, compact: bool = False, retrain: bool = False) -> None:
    """Make the pending change durable (the caller holds the folder's lock)."""
    _check_not_bypassed(col)
    for role, store in zip(TARGETS, col.stores(), strict=True):
        before = store.params.get("trained_on")
        if store.retrain_if_due(force=retrain):
            col.notes.append(f"retrained the {role} IVF-PQ index on {len(store)} vectors "
                             f"(it was trained on {before})")
            compact = True
    if compact or not col._log.name or not _append_record(col):
        write_generation(col)
    remove_leftovers(col)


def _index_file(name: str) -> bool:
    """A file a writer makes in the index folder: generation files and atomic-write temps."""
    return bool(GENERATION_FILE.match(name)) or (name.startswith(".") and name.endswith(".tmp"))


def remove_leftovers(col: IndexState, min_age_s: float = LEFTOVER_GRACE_S) -> list[Path]:
    """Under the lock, after a commit: delete what killed writers left in the folder (a half
    written generation, temp files) that the manifest does not name, once past the grace
    period; most commits only append to the log, so no generation write would sweep them."""
    named = {entry["name"] for entry in col.manifest.files.values()} | {col.manifest.log}
    return remove_stale_files(col.path, named, min_age_s, _index_file)


def _check_not_bypassed(col: IndexState) -> None:
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


def _encode_pending(col: IndexState) -> tuple[bytes, int]:
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
    header = {"generation": col.manifest.generation + 1, "ops": ops, "counts": col.counts()}
    return wal.encode_record(header, arrays), added


def _append_record(col: IndexState) -> bool:
    """Append the pending change to the log; False when a new generation is due instead."""
    record, added = _encode_pending(col)
    base_bytes = sum(entry["bytes"] for entry in col.manifest.files.values())
    if col._log.end + len(record) > max(WAL_SHARE * base_bytes, WAL_MIN_BYTES):
        return False
    if any(s.wants_full_save(col._log.added_rows + added) for s in col.stores()):
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
    col.manifest.counts = col.counts()
    return True


def write_generation(col: IndexState) -> None:
    """A full new generation and an empty log; the manifest switch is the commit point."""
    generation = col.manifest.generation + 1
    stem = f"{generation:06d}"
    superseded = {entry["name"] for entry in col.manifest.files.values()} | {col.manifest.log}
    try:
        names = _write_files(col, stem)
        manifest = col.manifest
        manifest.log = f"wal.{stem}.log" if col.images.keeps_log else ""
        if manifest.log:
            wal.create(col.path / manifest.log)
        manifest.generation = generation
        manifest.counts = col.counts()
        manifest.index_params = col.images.params
        manifest.versions = library_versions()
        manifest.save(col.path)  # the commit point
    except BaseException:
        _remove_unfinished(col.path, generation)
        raise
    col._committed_now()
    col._log = LogState(generation, manifest.log)
    col.keywords.saved_as(col.path / names[KEYWORDS], generation)
    for store in col.stores():
        store.committed()
    # The generation just replaced goes now; other leftovers after their grace period.
    for name in superseded - {*names.values(), manifest.log, ""}:
        with contextlib.suppress(OSError):  # committed already: a leftover is no error
            os.unlink(col.path / name)


def _write_files(col: IndexState, stem: str) -> dict[str, str]:
    """The generation's vector, index and items files, listed in the manifest (in memory)."""
    names: dict[str, str] = {}
    for role, store in zip(TARGETS, col.stores(), strict=True):
        for sub, name in store.save(col.path, f"{role}.{stem}").items():
            names[f"{role}.{sub}"] = name
    names["items"] = f"items.{stem}.json"
    atomic_save_json(col.path / names["items"],
                     {"items": col.items, "texts": [list(r) for r in col.text_rows]})
    names[KEYWORDS] = f"{KEYWORDS}.{stem}.npz"  # derived from the items: saved with them
    col.keywords.index(col.items, len(col.text_rows)).save(col.path / names[KEYWORDS],
                                                            int(stem))
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


def convert(col: IndexState, kind: str, metadata_rows) -> None:
    """New stores of `kind` over the same vectors, then a new generation (the commit point:
    a crash before it leaves the old index as it was)."""
    params = dict(col.manifest.index_params) if kind == col.manifest.index_type else None
    stores = [old.rebuilt_as(kind, params, lambda role=role: metadata_rows(role))
              for role, old in zip(TARGETS, col.stores(), strict=True)]
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
    fresh: IndexState | None = None  # or the folder loaded again (a new generation)


def read_new_records(col: IndexState) -> list[wal.Record]:
    """The log's whole records after what `col` has applied (read and checksummed)."""
    if not col._log.name:
        return []
    return wal.read(col.path / col._log.name, col._log.end).records


def apply_records(col: IndexState, records: list[wal.Record]) -> None:
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
    col.manifest.counts = col.counts()


def replay(col: IndexState) -> None:
    """Apply the log's whole records after what `col` has applied (open and catch-up)."""
    apply_records(col, read_new_records(col))


def _apply(col: IndexState, record: wal.Record) -> None:
    arrays = iter(record.arrays)
    for op in record.header["ops"]:
        if op["op"] == "remove":
            col._drop_rows({i for i in op["ids"] if i in col._row_of})
        else:
            image_vectors, text_vectors = next(arrays), next(arrays)
            col._add_rows(op["items"], image_vectors, text_vectors)
            col._log.added_rows += len(image_vectors) + len(text_vectors)


def read_update(col: IndexState, load: Callable[[Manifest], IndexState]) -> Update | None:
    """Under the folder's lock: what was committed since `col` read the folder (None: no
    index there). Reads and loads (`load`: the generation a manifest names); changes nothing
    in `col`."""
    latest = _committed(col.path)
    if latest is None:
        return None
    if latest.generation == col._log.base and latest.log == col._log.name and \
            _log_size(col) >= col._log.end:
        return Update(read_new_records(col))
    # A new generation; or the log shrank: a record this object read was cut off again by
    # its writer (its fsync failed), so what memory holds was never committed.
    return Update([], load(latest))


def apply_update(col: IndexState, update: Update | None) -> bool:
    """Apply what read_update read; True if anything changed."""
    if update is None:
        return False
    if update.fresh is not None:
        col._adopt(update.fresh)
        return True
    apply_records(col, update.records)
    return bool(update.records)


def _log_size(col: IndexState) -> int:
    try:
        return (col.path / col._log.name).stat().st_size if col._log.name else 0
    except FileNotFoundError:
        return -1
