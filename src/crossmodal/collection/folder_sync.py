"""Bring an index in line with the paths of one folder that changed: one batch of a watch.

Given the paths (relative to the folder) that something happened to, the files there now are
collected by the rules of `crossmodal index` (crossmodal.data.files: sidecar captions, hidden
files left out, bad files reported as skips), new or changed ones embedded outside the lock,
and items whose files are gone removed; all of it goes through the collection's one write
path (Collection.apply_embedded: the folder's lock, the latest generation, one commit per
`commit_every` items). A file that reappears under another name with the same content and
captions (a rename, a folder moved) keeps its vectors: its old id is removed and the new one
added in the same commit, nothing is embedded again.

Items belong to the folder when their stored path is the file their id names under it: items
added another way (a server's uploads, another folder indexed into the same index) are never
removed by a watch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossmodal.collection.ingest import AddReport, Embedded, embed_or_skip, plan, warm_up
from crossmodal.data.files import ItemSource, collect_items, read_caption_file
from crossmodal.data.images import IMAGE_EXTENSIONS
from crossmodal.data.loader import iter_image_batches
from crossmodal.errors import BadInputError
from crossmodal.item_ids import file_item_id


@dataclass
class Change:
    """One path below the folder ('/'-separated, "" for the folder itself) that changed;
    `folder`: an event said it is (or was) a folder, so items below it are looked at too."""

    path: str
    folder: bool = False


@dataclass
class BatchReport:
    """What one batch applied: ids as committed (a commit that failed raised instead)."""

    added: list[str] = field(default_factory=list)  # renamed items not among them
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old id, new id)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (absolute path, why)
    texts: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.renamed
                    or self.skipped)


class FolderSync:
    """Applies batches of changed paths of `root` to `collection` (a Collection)."""

    def __init__(self, collection, root: str | Path, batch_size: int = 32,
                 commit_every: int = 4096, caption_files: Iterable[str | Path] = ()):
        self.collection = collection
        self.root = Path(root).resolve()
        # Read once (as `crossmodal index --captions` reads them): IMAGE key -> captions.
        self._extra: dict[str, list[str]] = {}
        for caption_file in caption_files:
            for key, captions in read_caption_file(Path(caption_file)).items():
                self._extra.setdefault(key, []).extend(
                    text for text in (" ".join(c.split()) for c in captions) if text)
        self.batch_size = batch_size
        self.commit_every = commit_every
        self._index_folder = Path(collection.path).resolve()

    # --- which paths count ----------------------------------------------------------------
    def relative(self, path: str | bytes) -> str | None:
        """`path` (absolute, as an event names it) relative to the folder, or None for a path
        the walk leaves out: outside the folder, hidden, or inside the index folder."""
        path = os.fsdecode(path)
        relative = os.path.relpath(path, self.root)
        if relative == ".":
            return ""
        if relative.startswith(".."):
            return None
        if any(part.startswith(".") for part in relative.split(os.sep)):
            return None
        if self._inside_index(Path(path)):
            return None
        return relative.replace(os.sep, "/")

    def _inside_index(self, path: Path) -> bool:
        return path == self._index_folder or self._index_folder in path.parents

    # --- one batch ------------------------------------------------------------------------
    def apply(self, changes: Iterable[Change], busy: set[str] = frozenset()) -> BatchReport:
        """Index what is now at the changed paths, remove what is gone; `busy` are paths
        still being written: left as they are (a later batch takes them)."""
        if not self.root.is_dir():
            raise BadInputError(f"{self.root} is gone (removed or unmounted): stopped "
                                "watching; nothing was removed from the index")
        col = self.collection
        with col._writing():
            pass  # reads back what other writers committed: decide on the latest state
        changes = _outermost(_with_images_of_sidecars(self.root, changes))
        sources, report = self._collect(changes, busy)
        found = {source.id for source in sources}
        # A folder that could not be read (permissions, a network mount's hiccup) is not
        # a folder emptied: its items stay.
        kept = tuple(os.path.relpath(path, self.root).replace(os.sep, "/") + "/"
                     for path, why in report.skipped if why.startswith("cannot read folder"))
        gone = [item_id for item_id in self._owned(changes) if item_id not in found
                and item_id not in busy and not (item_id + "/").startswith(kept or ("\0",))]
        add_report = AddReport()
        todo = plan(col, sources, add_report)
        reused, todo = self._reuse_vectors(todo, gone, report)
        before = {meta["id"] for _, meta in todo if meta["id"] in col._row_of}
        unreadable = self._embed_and_apply(todo, reused, set(gone), add_report)
        report.skipped += add_report.skipped_files
        report.texts = add_report.texts
        embedded = {meta["id"] for _, meta in todo} - unreadable
        report.updated = sorted(embedded & before)
        report.added = sorted(embedded - before)
        report.removed = sorted((set(gone) - {old for old, _ in report.renamed})
                                | (unreadable & before))
        return report

    def _collect(self, changes: list[Change], busy: set[str]
                 ) -> tuple[list[ItemSource], BatchReport]:
        """The images now at the changed paths, with ids relative to the folder."""
        report = BatchReport()
        sources: list[ItemSource] = []
        for change in changes:
            where = self.root / change.path if change.path else self.root
            if not where.exists() or self._inside_index(where.resolve()):
                continue
            folder = where.is_dir()
            collected = collect_items([where])
            report.skipped += [(path, why) for path, why in collected.skipped_files
                               if not self._inside_index(Path(path))]
            for source in collected.items:
                if folder:
                    source.id = f"{change.path}/{source.id}" if change.path else source.id
                else:
                    source.id = change.path
                if source.id in busy or self._inside_index(source.path):
                    continue
                try:
                    file_item_id(source.id)  # a folder's name above may not be an id
                except BadInputError as exc:
                    report.skipped.append((str(source.path), str(exc)))
                    continue
                self._add_listed_captions(source)
                sources.append(source)
        return sources, report

    def _add_listed_captions(self, source: ItemSource) -> None:
        """Captions the --captions files list for it, by id, file name or name without
        extension (the rule of crossmodal.data.files), after its sidecar's."""
        if self._extra:
            name = source.id.rpartition("/")[2]
            for key in dict.fromkeys((source.id, name, Path(name).stem)):
                source.captions += self._extra.get(key, [])

    def _owned(self, changes: list[Change]) -> list[str]:
        """Ids of the folder's items at or below the changed paths."""
        col = self.collection
        ids = [c.path for c in changes if c.path and not c.folder and c.path in col._row_of]
        prefixes = tuple(f"{c.path}/" if c.path else "" for c in changes if c.folder or
                         not c.path)
        if prefixes:
            ids += [item["id"] for item in col.items if item["id"].startswith(prefixes)]
        return [item_id for item_id in dict.fromkeys(ids)
                if self._belongs(col.items[col._row_of[item_id]])]

    def _belongs(self, item: dict) -> bool:
        """Whether `item` was indexed from the file its id names under the folder (a link
        inside the folder counts: its stored path is the file it points to)."""
        named = self.root / item["id"]
        return item.get("path") == str(named) or item.get("path") == os.path.realpath(named)

    # --- vectors --------------------------------------------------------------------------
    def _reuse_vectors(self, todo: list[tuple[ItemSource, dict]], gone: list[str],
                       report: BatchReport) -> tuple[list[Embedded], list[tuple]]:
        """Files whose content and captions are those of an item that went (a rename) take
        its stored vectors; the rest are left to embed."""
        col = self.collection
        by_hash: dict[str, list[str]] = {}
        for item_id in gone:
            digest = col.items[col._row_of[item_id]].get("sha256")
            if digest:
                by_hash.setdefault(digest, []).append(item_id)
        reused, rest = [], []
        for source, meta in todo:
            old = _same_name_first(by_hash.get(meta["sha256"], []), meta["id"])
            vectors = self._stored_vectors(old) if old is not None else None
            if vectors is None:
                rest.append((source, meta))
                continue
            image, texts = vectors
            rows = [(meta["id"], k) for k in range(len(source.captions))]
            reused.append(Embedded([(source, meta)], image, texts if rows else None, rows))
            report.renamed.append((old, meta["id"]))
        return reused, rest

    def _stored_vectors(self, item_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        col = self.collection
        try:
            image = col.images.get_vectors(np.array([col._row_of[item_id]], np.int64))
            span = col._row_of.captions_of(item_id)
            texts = col.texts.get_vectors(np.arange(span.start, span.stop, dtype=np.int64))
        except Exception:  # noqa: BLE001 - a store that cannot give them back: embed again
            return None
        return np.asarray(image, np.float32), np.asarray(texts, np.float32)

    def _embed_and_apply(self, todo: list[tuple[ItemSource, dict]], reused: list[Embedded],
                         drop: set[str], add_report: AddReport) -> set[str]:
        """Embed `todo` outside the lock and apply it with `reused` and the removal of
        `drop`, committing every `commit_every` items; returns the ids that failed to
        decode or embed (their old vectors are removed, as `crossmodal index` does)."""
        col = self.collection
        pending, unreadable = list(reused), set()
        if todo:
            warm_up(col.encoder)
        for positions, images, failures in iter_image_batches(
            [source.path for source, _ in todo], self.batch_size,
            target_size=col.encoder.preprocessing.size,
        ):
            for position, reason in failures:
                add_report.skipped_files.append((str(todo[position][0].path), reason))
                unreadable.add(todo[position][0].id)
            if positions:
                pending += embed_or_skip(col.encoder, [todo[p] for p in positions], images,
                                         add_report, unreadable)
            if sum(len(e.batch) for e in pending) >= self.commit_every:
                col.apply_embedded(pending, drop, add_report)
                pending, drop = [], set()
        if pending or drop or unreadable:
            col.apply_embedded(pending, drop | unreadable, add_report)
        return unreadable


def _same_name_first(candidates: list[str], new_id: str) -> str | None:
    """Take one of the ids that went with this content from `candidates`: the one with the
    new id's file name if any (copies of one photo renamed together keep their own)."""
    if not candidates:
        return None
    name = new_id.rpartition("/")[2]
    pick = next((c for c in candidates if c.rpartition("/")[2] == name), candidates[0])
    candidates.remove(pick)
    return pick


def _with_images_of_sidecars(root: Path, changes: Iterable[Change]) -> list[Change]:
    """A caption sidecar that changed (dog.txt, dog.jpg.txt) changes its image's item."""
    out = []
    for change in changes:
        out.append(change)
        if change.folder or not change.path.lower().endswith(".txt"):
            continue
        stem = change.path[:-4]
        if Path(stem).suffix.lower() in IMAGE_EXTENSIONS:
            out.append(Change(stem))
            continue
        out += [Change(stem + ext) for ext in IMAGE_EXTENSIONS
                if (root / (stem + ext)).is_file()]
    return out


def _outermost(changes: list[Change]) -> list[Change]:
    """One change per path, none below a folder that changed too (collected with it)."""
    merged: dict[str, Change] = {}
    for change in changes:
        held = merged.setdefault(change.path, change)
        held.folder = held.folder or change.folder
    folders = {c.path for c in merged.values() if c.folder}
    if "" in merged:
        return [Change("", folder=True)]

    def below_a_folder(path: str) -> bool:
        parts = path.split("/")
        return any("/".join(parts[:n]) in folders for n in range(1, len(parts)))

    return [c for c in merged.values() if not below_a_folder(c.path)]
