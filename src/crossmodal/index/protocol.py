"""What a collection needs from a vector store (faiss in a folder, or a Milvus collection).

Rows are addressed by position: row i is the i-th vector added and not removed since, so the
engine's item list and the store stay aligned; removing rows shifts the later ones down
(positions do; how a store holds removed rows is its own business: the faiss store keeps them
as tombstones until it writes a generation).
Each row may carry a metadata dict (crossmodal.index.metadata) that `where` filters match.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from crossmodal.index.filters import Filter


@runtime_checkable
class VectorStore(Protocol):
    dim: int
    kind: str  # "flat", "hnsw" or "ivfpq"
    params: dict
    keeps_log: bool  # changes are logged in the folder between whole saves (else each
    # commit saves the store whole: keep that cheap)
    tombstones: int  # removed rows still held (searches skip them) until a whole save

    def __len__(self) -> int: ...

    def add(self, vectors: np.ndarray, metadata: list[dict] | None = None) -> None:
        """Append (n, dim) float32 rows, with one metadata dict per row (or none)."""

    def remove(self, positions: np.ndarray) -> None:
        """Drop rows by position; the rows after them move down."""

    def search(self, queries: np.ndarray, k: int, threads: int | None = None,
               where: Filter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions), each (n_queries, k'), best first; -1 pads missing hits."""

    def get_vectors(self, positions: np.ndarray) -> np.ndarray:
        """The stored float32 vectors of these rows, (len(positions), dim)."""

    def save(self, folder: Path, stem: str) -> dict[str, str]:
        """Write this generation's local files; role -> file name, for the manifest."""

    def committed(self) -> None:
        """The manifest naming the last save is on disk: finish work deferred until then."""

    def retrain_if_due(self, force: bool = False) -> bool:
        """Before a commit: retrain what was trained on too few rows (or all, `force`);
        True if it was, and the commit then saves the store whole."""

    def wants_full_save(self, log_rows: int) -> bool:
        """Whether the next commit should save this store whole rather than log the change
        (`log_rows`: the vectors the folder's log would then hold, replayed on every open)."""

    def rebuilt_as(self, kind: str, params: dict | None,
                   metadata: Callable[[], list[dict]]) -> VectorStore:
        """A new store of index type `kind` over the same rows (`convert`); BadInputError
        where the store cannot convert in place."""

    def bytes_per_vector(self) -> float:
        """Memory (or disk, for a remote store: 0 when unknown) the index holds per vector."""

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
