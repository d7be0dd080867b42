"""The writer's side of a Collection: the folder's lock, catching up, and undoing a change
that failed to commit.

One writer at a time per index folder (an flock on `.lock`; other processes wait), and every
change is applied to the latest committed state. A change is applied to memory first, then
made durable (crossmodal.index.generations: a log record or a new generation); if that fails
before its commit point (a full disk, an I/O error), memory is loaded again from the folder,
so nothing that was not written is ever seen or acknowledged, and a retry starts clean.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from crossmodal.errors import write_failed
from crossmodal.index import generations
from crossmodal.index.generations import LogState
from crossmodal.index.manifest import Manifest

log = logging.getLogger("crossmodal.engine")


class FolderWriter:
    """Mixed into Collection, whose __init__ sets what these methods use: path, manifest,
    items, text_rows, images, texts, _log, _pending, _uncommitted, _lock_owner, _encoder,
    change_guard; and whose _load / _reindex they call."""

    @property
    def stale(self) -> bool:
        """True when memory may hold a change that failed to commit and could not be undone
        (the folder could not be read back): the next change, or a server's refresh, reloads
        the folder first."""
        return self._log.base < 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's writer lock, caught up with its latest commit, for a decision
        other writers must not race (e.g. that no item refers to a stored file any more).
        Changes made inside by this object's methods (in this thread) commit as usual; the
        block itself does not hold `change_guard`, so searches go on meanwhile."""
        if self._lock_owner == threading.get_ident():
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._lock_owner = threading.get_ident()
            try:
                # What others committed is read (and a new generation loaded) before the
                # guard; only applying it holds `change_guard`, so searches wait only for that.
                update = generations.read_update(self)
                with self._guarded():
                    generations.apply_update(self, update)
                yield
            finally:
                self._lock_owner = None
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One writer at a time per index folder (other processes wait), and every change is
        applied to the latest committed generation: whatever another writer committed since
        this object was loaded is read back first, so no writer overwrites another's work."""
        with self.locked(), self._guarded():
            yield

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """`change_guard`, and a change that fails before its commit point (a full disk, an
        I/O error) is undone: memory goes back to the last commit, so nothing unwritten is
        ever seen, and the error says nothing was changed."""
        with self.change_guard():
            try:
                yield
            except Exception as exc:
                if not self._uncommitted:
                    raise
                self._restore_committed()
                if isinstance(exc, OSError):
                    raise write_failed(exc) from exc
                raise

    def _restore_committed(self) -> None:
        """Drop what memory holds beyond the last commit: load the folder again (as opening
        does; only after a failed write). If that fails too, mark this object stale."""
        try:
            fresh = type(self)._load(self.path, Manifest.load(self.path), self._encoder)
        except Exception as exc:
            if not isinstance(exc, FileNotFoundError):  # none: a `create` that failed
                log.warning("could not read %s back after a failed write: %s", self.path, exc)
            self._log = LogState(-1, "")
            return
        self._adopt(fresh)

    def _adopt(self, fresh: FolderWriter) -> None:
        """Take over `fresh`'s state (the same folder, loaded later)."""
        old = (self.images, self.texts)
        self.manifest, self.items, self.text_rows = fresh.manifest, fresh.items, fresh.text_rows
        self.images, self.texts, self._log = fresh.images, fresh.texts, fresh._log
        self._committed_now()
        self._reindex()
        for store in old:
            store.close()

    def _committed_now(self) -> None:
        """The folder holds what memory holds (a commit point passed, or a replay ended)."""
        self._pending.clear()
        self._uncommitted = False


def remove_new_folder(path: Path, created: bool) -> None:
    """Undo a `create` that failed: the folder goes (or is emptied, if it was there, empty)."""
    if created:
        shutil.rmtree(path, ignore_errors=True)
        return
    for entry in path.iterdir():
        with contextlib.suppress(OSError):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
