"""A store's float32 vectors: the loaded generation (often memory-mapped) plus rows appended
since, in a buffer that grows by doubling.

Reads gather rows from both parts without joining them, so a server that adds one item and
then answers a filtered search or a "more like this" does not copy the whole matrix (1 GB at
1M x 256-d) for it. Only `joined()` (a save, a rebuild) makes one array of everything.
"""

from __future__ import annotations

import numpy as np


class VectorRows:
    def __init__(self, base: np.ndarray, dim: int):
        self.base = base
        self.dim = dim
        self._tail = np.zeros((0, dim), np.float32)
        self._tail_rows = 0

    def __len__(self) -> int:
        return len(self.base) + self._tail_rows

    def append(self, vectors: np.ndarray) -> None:
        need = self._tail_rows + len(vectors)
        if need > len(self._tail):
            grown = np.zeros((max(need, 2 * len(self._tail), 1024), self.dim), np.float32)
            grown[: self._tail_rows] = self._tail[: self._tail_rows]
            self._tail = grown
        self._tail[self._tail_rows : need] = vectors
        self._tail_rows = need

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows `ids` (physical row numbers), in that order."""
        ids = np.asarray(ids, dtype=np.int64)
        if not self._tail_rows:
            return np.asarray(self.base[ids], dtype=np.float32)
        in_base = ids < len(self.base)
        out = np.empty((len(ids), self.dim), np.float32)
        out[in_base] = self.base[ids[in_base]]
        out[~in_base] = self._tail[ids[~in_base] - len(self.base)]
        return out

    def joined(self) -> np.ndarray:
        """Every row as one array (the new base: later reads and joins reuse it)."""
        if self._tail_rows:
            self.base = np.concatenate([np.asarray(self.base),
                                        self._tail[: self._tail_rows]])
            self._tail, self._tail_rows = np.zeros((0, self.dim), np.float32), 0
        return self.base
