"""Keep an index in line with a folder as it changes: events, settling, batches.

A watchdog observer (inotify on Linux; polling where the kernel's watches run out) reports
paths that were created, written, deleted or moved. Each path waits until it has been quiet
for `quiet_s` and its size and mtime have stayed the same over `settle_s` (a file still being
copied or written is not read half-written); then every settled path of the burst becomes one
batch, applied by FolderSync (crossmodal.collection.folder_sync) through the collection's
write path. A burst that never pauses is cut into batches every `max_wait_s`.

The first batch is the whole folder (a startup rescan): what changed while nothing watched
(files added, changed, deleted or renamed meanwhile) is caught up before events are followed,
and the observer is started before it, so nothing that happens during the rescan is missed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from crossmodal.collection.folder_sync import BatchReport, Change, FolderSync

_IGNORED_EVENTS = {"opened", "closed_no_write"}


@dataclass
class _Pending:
    folder: bool
    last_event: float  # monotonic time of the last event on the path
    signature: tuple | None = None  # (size, mtime_ns) at the last check, or ("gone",)
    checked: float = 0.0  # when `signature` was taken
    since: float = 0.0  # when the path first became quiet and unchanged
    writing: bool = False  # written to, and not closed since (inotify says when)


class ChangeQueue:
    """Paths with events, until they settle (thread-safe: the observer's thread adds)."""

    def __init__(self, relative: Callable[[str], str | None], quiet_s: float = 0.5,
                 settle_s: float = 0.25, max_wait_s: float = 5.0, stalled_s: float = 30.0):
        self.relative = relative
        self.quiet_s, self.settle_s, self.max_wait_s = quiet_s, settle_s, max_wait_s
        self.stalled_s = stalled_s
        self.root_path: Path | None = None
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._woken = threading.Event()

    # --- the observer's side: watchdog calls `dispatch` with each event ---------------------
    def dispatch(self, event) -> None:  # noqa: ANN001 - a watchdog FileSystemEvent
        kind = event.event_type
        if kind in _IGNORED_EVENTS:
            return
        if kind == "events_lost":  # the kernel dropped events: look at everything again
            self.mark("", folder=True)
            return
        if kind == "modified" and event.is_directory:
            return  # a folder's entries changed: the entries' own events say which
        # Written to (held open, maybe), closed or moved away; a create or a chmod says neither.
        writing = None if event.is_directory or kind in ("created", "attrib") \
            else kind == "modified"
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                relative = self.relative(path)
                if relative is not None:
                    self.mark(relative, folder=event.is_directory, writing=writing)

    def mark(self, relative: str, folder: bool = False, writing: bool | None = None) -> None:
        """An event on `relative`; `writing`: True when it was written to, False when closed
        or moved, None when the event says neither."""
        with self._lock:
            held = self._pending.get(relative)
            now = time.monotonic()
            if held is None:
                held = self._pending[relative] = _Pending(folder, now)
            else:
                held.folder = held.folder or folder
                held.last_event, held.since = now, 0.0
            if writing is not None:
                held.writing = writing
        self._woken.set()

    # --- the applying side ----------------------------------------------------------------
    def next_batch(self, stop: threading.Event, tick_s: float = 0.05
                   ) -> tuple[list[Change], set[str]] | None:
        """The next batch of settled changes and the paths still settling (left out of it),
        or None once `stop` is set."""
        while not stop.is_set():
            batch = self._take_settled()
            if batch is not None:
                return batch
            self._woken.wait(tick_s)
            self._woken.clear()
        return None

    def _take_settled(self) -> tuple[list[Change], set[str]] | None:
        """Under the lock (an event resets a path's settling): the settled paths, once none
        is still settling or the oldest has waited `max_wait_s`."""
        now = time.monotonic()
        with self._lock:
            settled = [path for path, held in self._pending.items()
                       if self._settled(path, held, now)]
            if not settled:
                return None
            oldest = min(self._pending[path].since for path in settled)
            if len(settled) < len(self._pending) and now - oldest < self.max_wait_s:
                return None  # the burst goes on: wait for it to end
            taken = [Change(path, self._pending.pop(path).folder) for path in settled]
            return taken, set(self._pending)

    def _settled(self, relative: str, held: _Pending, now: float) -> bool:
        """Quiet for `quiet_s` (`stalled_s` while a writer still holds it open: a copy that
        paused), and the same size and mtime over `settle_s`."""
        if now - held.last_event < (self.stalled_s if held.writing else self.quiet_s):
            return False
        if held.since:
            return True
        if now - held.checked < self.settle_s:
            return False
        signature = self._signature(relative)
        if signature == held.signature:
            held.since = now
            return True
        held.signature, held.checked = signature, now
        return False

    def _signature(self, relative: str) -> tuple:
        path = self.root_path / relative if self.root_path and relative else self.root_path
        try:
            stat = os.stat(path)
        except (OSError, TypeError):
            return ("gone",)
        return (stat.st_size, stat.st_mtime_ns)


class FolderWatch:
    """Follow `root` into `collection` until `stop` is set: `run` calls `on_batch` with
    each applied batch's report (after its commit)."""

    def __init__(self, collection, root: str | Path, on_batch: Callable[[BatchReport], None],
                 batch_size: int = 32, quiet_s: float = 0.5, settle_s: float = 0.25,
                 max_wait_s: float = 5.0, caption_files: Sequence[str | Path] = ()):
        self.sync = FolderSync(collection, root, batch_size=batch_size,
                               caption_files=caption_files)
        self.root = self.sync.root
        self.on_batch = on_batch
        self.queue = ChangeQueue(self.sync.relative, quiet_s, settle_s, max_wait_s)
        self.queue.root_path = self.root
        self.stop_event = threading.Event()
        self.observer = None
        self.polling = False

    def start(self) -> None:
        """Start the observer (before the rescan: nothing that happens meanwhile is lost)."""
        self.observer = _start_observer(self.root, self.queue)
        self.polling = type(self.observer).__name__ == "PollingObserver"

    def run(self) -> None:
        """The startup rescan, then batches as they settle, until `stop()`."""
        if self.observer is None:
            self.start()
        try:
            self.on_batch(self.sync.apply([Change("", folder=True)]))
            while True:
                batch = self.queue.next_batch(self.stop_event)
                if batch is None:
                    return
                changes, busy = batch
                self.on_batch(self.sync.apply(changes, busy))
        finally:
            self.close()

    def stop(self) -> None:
        """Ask `run` to return once the batch it is applying (if any) is committed."""
        self.stop_event.set()

    def close(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None


def _start_observer(root: Path, queue: ChangeQueue):  # noqa: ANN202 - a watchdog observer
    """The platform's observer on `root`, recursive; a polling one when the kernel refuses
    more watches (inotify's max_user_watches)."""
    handler = _Handler(queue)
    observer = Observer()
    try:
        observer.schedule(handler, str(root), recursive=True)
        observer.start()
        return observer
    except OSError:  # e.g. ENOSPC: the kernel's inotify watches are used up
        observer = PollingObserver(timeout=1)
        observer.schedule(handler, str(root), recursive=True)
        observer.start()
        return observer


class _Handler(FileSystemEventHandler):
    """The watchdog event handler: every event goes to the queue."""

    def __init__(self, queue: ChangeQueue):
        self.queue = queue

    def dispatch(self, event) -> None:  # noqa: ANN001
        self.queue.dispatch(event)
