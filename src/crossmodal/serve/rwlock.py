"""Many readers or one writer, for the server's one in-memory index."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class ReadWriteLock:
    """Readers share; a writer is alone. A waiting writer holds back new readers, so a
    steady stream of searches cannot starve an upload. Not reentrant: a thread holding a
    read lease must not ask for another while a writer may be waiting."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._state:
            self._state.wait_for(lambda: not (self._writing or self._writers_waiting))
            self._readers += 1
        try:
            yield
        finally:
            with self._state:
                self._readers -= 1
                if not self._readers:
                    self._state.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._state:
            self._writers_waiting += 1
            try:
                self._state.wait_for(lambda: not (self._writing or self._readers))
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._state:
                self._writing = False
                self._state.notify_all()
