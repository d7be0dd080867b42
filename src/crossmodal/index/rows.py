"""Item id -> position in a list that is appended to and deleted from, without rebuilding.

Removing an item shifts every later position down by one, so a plain id -> position dict would
need a rebuild (seconds at millions of items) after every removal. Here each id keeps a serial
number for life; its position is the rank of its serial among the live ones (a cumulative sum,
computed again only after a change: milliseconds at 1M). Captions the same way: an item's
captions are consecutive caption rows, so each item records its first caption serial.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class _Column:
    """A growable numpy array (amortised doubling)."""

    def __init__(self, dtype: type):
        self.data = np.zeros(1024, dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self.data):
            grown = np.zeros(max(need, 2 * len(self.data)), self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : need] = values
        self.size = need

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.size]


class RowIndex(Mapping):
    """A read-only mapping id -> position, kept up to date by `append` and `remove`."""

    def __init__(self, items: list[dict]):
        self._serial: dict[str, int] = {}
        self._alive, self._text_alive = _Column(bool), _Column(bool)
        self._first_text, self._captions = _Column(np.int64), _Column(np.int64)
        self._ranks: tuple[np.ndarray, np.ndarray] | None = None
        self._removed = 0  # none yet: a position is its serial, no cumulative sum needed
        self.append(items)

    def append(self, items: list[dict]) -> None:
        counts = np.array([len(item["captions"]) for item in items], np.int64)
        first = self._text_alive.size + np.concatenate([[0], np.cumsum(counts)[:-1]]) \
            if len(items) else counts
        first_serial = self._alive.size  # dict from zip: ~3x a Python loop at 1M items
        self._serial.update(zip([item["id"] for item in items],
                                range(first_serial, first_serial + len(items)), strict=True))
        self._alive.extend(np.ones(len(items), bool))
        self._first_text.extend(first)
        self._captions.extend(counts)
        self._text_alive.extend(np.ones(int(counts.sum()), bool))
        self._ranks = None

    def remove(self, item_ids: set[str]) -> None:
        for item_id in item_ids:
            serial = self._serial.pop(item_id, None)
            if serial is None:
                continue
            self._alive.view[serial] = False
            self._removed += 1
            start = self._first_text.view[serial]
            self._text_alive.view[start : start + self._captions.view[serial]] = False
        self._ranks = None

    @property
    def caption_rows(self) -> int:
        """Caption rows ever appended, live or not (right after building: all of them)."""
        return self._text_alive.size

    def _rank(self) -> tuple[np.ndarray, np.ndarray]:
        if self._ranks is None:
            self._ranks = (np.cumsum(self._alive.view, dtype=np.int64) - 1,
                           np.cumsum(self._text_alive.view, dtype=np.int64) - 1)
        return self._ranks

    def captions_of(self, item_id: str) -> range:
        """Positions of the item's caption rows."""
        serial = self._serial[item_id]
        count = int(self._captions.view[serial])
        if not count:
            return range(0)
        first = int(self._first_text.view[serial])
        start = first if not self._removed else int(self._rank()[1][first])
        return range(start, start + count)

    def __getitem__(self, item_id: str) -> int:
        serial = self._serial[item_id]
        return serial if not self._removed else int(self._rank()[0][serial])

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._serial

    def __iter__(self) -> Iterator[str]:  # in position order: dicts keep insertion order
        return iter(self._serial)

    def __len__(self) -> int:
        return len(self._serial)
