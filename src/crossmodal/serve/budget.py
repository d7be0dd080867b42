"""How much image decoding the server does at once: a count of decodes (cores) and a memory
budget in bytes, each decode reserving what its header says it may allocate."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class MemoryBudget:
    """A semaphore weighted by bytes: reservations wait until they fit under `capacity`.

    One reservation larger than the whole budget still runs, alone (refusing it is the pixel
    cap's job, not the budget's). Waiters are served in arrival order, so a stream of small
    decodes cannot starve a big one."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError("a memory budget must be positive")
        self.capacity = capacity
        self._used = 0
        self._state = threading.Condition()
        self._queue: list[object] = []  # tickets of waiting reservations, oldest first

    @property
    def used(self) -> int:
        return self._used

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        nbytes = min(max(int(nbytes), 0), self.capacity)
        ticket = object()
        with self._state:
            self._queue.append(ticket)
            try:
                self._state.wait_for(lambda: self._queue[0] is ticket
                                     and self._used + nbytes <= self.capacity)
            finally:
                self._queue.remove(ticket)
                self._state.notify_all()  # the next in line may fit now
            self._used += nbytes
        try:
            yield
        finally:
            with self._state:
                self._used -= nbytes
                self._state.notify_all()


class DecodeGate:
    """At most `slots` decodes at once (CPU) and at most `budget_bytes` reserved by them
    (memory): `reserve(nbytes)` is what crossmodal.data.images.load_image holds."""

    def __init__(self, slots: int, budget_bytes: int):
        self._slots = threading.BoundedSemaphore(slots)
        self.budget = MemoryBudget(budget_bytes)

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        with self._slots, self.budget.reserve(nbytes):
            yield
