"""The collection's keyword index (crossmodal.index.keywords), kept in step with its items.

It is derived data: what memory holds of the items is the truth, and the keyword index is
never trusted beyond it. On disk it is one more file of a generation, `keywords.<gen>.npz`,
written with the generation's other files before the manifest names them (the commit point;
crossmodal.collection.commits), so a crash leaves either the old generation with its own
keyword file or the new one with its own. Log records are applied to it as they are to the
vector stores.

It is loaded on first use, not when the index opens (a vector search never pays for it):
until then the changes applied to memory (log replay, this process's own changes) are queued
and applied after loading. If the file is missing (an index made before it existed, or a
generation replaced by another writer since this one was opened), of another generation or
unreadable, or if what it holds disagrees with the items in memory, the index is built from
the items instead. A change that fails to commit puts memory back at the last commit by
loading the folder again (crossmodal.collection.writer), which brings a fresh KeywordState.
"""

from __future__ import annotations

import logging
import threading
import zipfile
from pathlib import Path

from crossmodal.index.keywords import KeywordIndex

log = logging.getLogger("crossmodal.engine")
ROLE = "keywords"  # its key in the manifest's files


class KeywordState:
    """The keyword index of one IndexState: loaded or built when first asked for."""

    def __init__(self, path: Path, files: dict, generation: int):
        entry = files.get(ROLE)
        self._file = Path(path) / entry["name"] if entry else None
        self._generation = generation  # the generation the file was written for
        self._index: KeywordIndex | None = None
        self._queued: list[tuple[str, list]] = []  # changes to apply after loading
        self._loading = threading.Lock()  # searches share a collection: one loads it

    @property
    def loaded(self) -> bool:
        return self._index is not None

    def added(self, items: list[dict]) -> None:
        if self._index is None:
            self._queued.append(("add", items))
            return
        for item in items:
            self._index.add_item(item["id"], item["captions"])

    def removed(self, item_ids: set[str]) -> None:
        if self._index is None:
            self._queued.append(("remove", sorted(item_ids)))
            return
        self._index.remove_items(item_ids)

    def index(self, items: list[dict], caption_count: int) -> KeywordIndex:
        """The keyword index of `items` (memory's items; `caption_count` their captions)."""
        with self._loading:
            if self._index is None:
                self._index = self._materialised(items, caption_count)
        return self._index

    def _materialised(self, items: list[dict], caption_count: int) -> KeywordIndex:
        """The saved file plus the queued changes, or else an index built from `items`."""
        index = self._from_file()
        if index is not None:
            for op, what in self._queued:
                if op == "add":
                    for item in what:
                        index.add_item(item["id"], item["captions"])
                else:
                    index.remove_items(what)
            if not agrees(index, items, caption_count):
                log.warning("%s disagrees with the items: rebuilt from them", self._file)
                index = None
        self._queued = []
        return index if index is not None else build(items)

    def _from_file(self) -> KeywordIndex | None:
        if self._file is None:
            return None
        try:
            return KeywordIndex.load(self._file, self._generation)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            if not isinstance(exc, FileNotFoundError):  # replaced by a newer generation
                log.warning("cannot read %s (%s): rebuilt from the items", self._file, exc)
            return None

    def saved_as(self, path: Path, generation: int) -> None:
        """A new generation wrote the (loaded) index to `path`."""
        self._file, self._generation = Path(path), generation


def build(items: list[dict]) -> KeywordIndex:
    index = KeywordIndex()
    for item in items:
        index.add_item(item["id"], item["captions"])
    return index


def agrees(index: KeywordIndex, items: list[dict], caption_count: int) -> bool:
    """Whether `index` holds exactly these items, each with its number of captions."""
    docs = index.docs_of
    return index.counts() == (len(items), caption_count) and \
        all(len(docs.get(item["id"], ())) == 1 + len(item["captions"]) for item in items)
