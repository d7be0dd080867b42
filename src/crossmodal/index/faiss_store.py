"""Vectors plus a faiss index over them: exact inner product, HNSW or IVF-PQ.

Implements crossmodal.index.protocol.VectorStore. Row metadata lives in memory only (the engine
rebuilds it from its item list on open); a `where` filter selects rows from it, searched exactly
when few match, through the index with a faiss IDSelector otherwise.

The float32 vectors (.npy) are the source of truth, memory-mapped on open; the faiss index
is derived from them (exact search builds it at load, HNSW/IVF-PQ are saved beside them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from crossmodal.errors import BadInputError, IndexCorruptError
from crossmodal.index.filters import Filter
from crossmodal.index.storage import atomic_save_npy, atomic_write

INDEX_TYPES = ("flat", "hnsw", "ivfpq")
DEFAULT_PARAMS = {
    "flat": {},
    "hnsw": {"M": 32, "ef_construction": 80, "ef_search": 128},
    # nlist/m 0: chosen from the data when trained, once min_train vectors are there
    # rerank: fetch rerank x k candidates, rescore them exactly from the stored vectors
    "ivfpq": {"nlist": 0, "m": 0, "nbits": 8, "nprobe": 64, "min_train": 10_000, "rerank": 10},
}
# A filter matching at most this many rows (or 5%) is searched exactly over just those rows.
FILTER_EXACT_ROWS = 20_000



def pq_subvectors(dim: int) -> int:
    """Default product-quantiser sub-vectors: the largest of 64..1 dividing dim, <= dim / 4."""
    return next(c for c in (64, 32, 16, 8, 4, 2, 1) if dim % c == 0 and c <= max(1, dim // 4))

@dataclass
class FaissStore:
    dim: int
    kind: str = "flat"
    params: dict = field(default_factory=dict)
    initial_vectors: InitVar[np.ndarray | None] = None  # (n, dim) float32, maybe a memmap
    index: faiss.Index | None = None  # None: IVF-PQ not trained yet (searched exactly)
    # one dict per initial row, or a function making them when a filter first needs them
    initial_metadata: InitVar[list[dict] | Callable[[], list[dict]] | None] = None

    def __post_init__(self, initial_vectors: np.ndarray | None,
                      initial_metadata: list[dict] | Callable[[], list[dict]] | None) -> None:
        if self.kind not in INDEX_TYPES:
            raise BadInputError(
                f"unknown index type '{self.kind}' (known: {', '.join(INDEX_TYPES)})")
        self.params = {**DEFAULT_PARAMS[self.kind], **(self.params or {})}
        first = np.zeros((0, self.dim), np.float32) if initial_vectors is None else initial_vectors
        # Appends go to a list of chunks, joined only when the whole matrix is needed, so
        # adding batch by batch stays linear in the collection size.
        self._chunks: list[np.ndarray] = [first]
        self._count = len(first)
        self._metadata: list[dict] | None = None
        self._metadata_source = initial_metadata if callable(initial_metadata) else None
        if not callable(initial_metadata):
            self._metadata = list(initial_metadata or [{}] * self._count)
            if len(self._metadata) != self._count:
                raise BadInputError(f"{len(self._metadata)} metadata rows for {self._count} "
                                    "vectors")
        self._mask_cache: tuple[str, int, np.ndarray] | None = None
        if self.index is None:
            self.index = self._build(first)

    @property
    def vectors(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate([np.asarray(c) for c in self._chunks])]
        return self._chunks[0]

    def __len__(self) -> int:
        return self._count

    @property
    def metadata(self) -> list[dict]:
        if self._metadata is None:
            self._metadata = list(self._metadata_source())
            if len(self._metadata) != self._count:
                raise IndexCorruptError(f"{len(self._metadata)} metadata rows for "
                                        f"{self._count} vectors")
        return self._metadata

    def get_vectors(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.vectors[np.asarray(positions, dtype=np.int64)], dtype=np.float32)

    def committed(self) -> None:
        """Nothing deferred: every generation's files are complete when save returns."""

    def close(self) -> None:
        """No connection to release."""

    def _new_index(self, sample: np.ndarray) -> faiss.Index:
        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, int(self.params["M"]), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(self.params["ef_construction"])
            index.hnsw.efSearch = int(self.params["ef_search"])
            return index
        # IVF-PQ needs training data; fewer than 256 vectors per list trains poorly.
        n = len(sample)
        nlist = int(self.params["nlist"]) or max(1, min(4096, int(4 * np.sqrt(max(n, 1)))))
        m = int(self.params["m"]) or pq_subvectors(self.dim)
        nbits = int(self.params["nbits"])
        if n < max(nlist, 2**nbits):
            raise BadInputError(
                f"IVF-PQ needs at least {max(nlist, 2**nbits)} vectors to train, got {n}: "
                "use --index-type flat or hnsw for small collections"
            )
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        want = max(100_000, 64 * nlist)  # faiss wants >= 39 training points per list
        train = sample if n <= want else sample[np.sort(rng.choice(n, want, replace=False))]
        index.train(np.ascontiguousarray(train, dtype=np.float32))
        index.nprobe = int(self.params["nprobe"])
        self.params.update(nlist=nlist, m=m)
        return index

    def _build(self, vectors: np.ndarray) -> faiss.Index | None:
        if self.kind == "ivfpq" and len(vectors) < max(int(self.params["min_train"]), 256):
            return None  # too few to train on: searched exactly until there are enough
        index = self._new_index(vectors)
        self._add_chunked(index, vectors)
        return index

    @staticmethod
    def _add_chunked(index: faiss.Index, vectors: np.ndarray, chunk: int = 65536) -> None:
        for start in range(0, len(vectors), chunk):
            index.add(np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32))

    def add(self, vectors: np.ndarray, metadata: list[dict] | None = None) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise BadInputError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        if metadata is not None and len(metadata) != len(vectors):
            raise BadInputError(f"{len(metadata)} metadata rows for {len(vectors)} vectors")
        self.metadata.extend(metadata if metadata is not None else [{}] * len(vectors))
        if self.index is None:  # untrained IVF-PQ: train now if there are enough (may raise)
            combined = np.concatenate([np.asarray(self.vectors), vectors])
            self.index = self._build(combined)
            self._chunks = [combined]
        else:
            self._add_chunked(self.index, vectors)
            self._chunks.append(vectors)
        self._count += len(vectors)

    def remove(self, positions: np.ndarray) -> None:
        keep = np.ones(len(self), dtype=bool)
        keep[np.asarray(positions, dtype=np.int64)] = False
        self._chunks = [np.ascontiguousarray(np.asarray(self.vectors)[keep])]
        self._metadata = [row for row, kept in zip(self.metadata, keep, strict=True) if kept]
        self._count = int(keep.sum())
        if self.kind == "ivfpq" and self.index is not None:
            self.index.reset()  # keep the trained quantizer; positions shift, so re-add
            self._add_chunked(self.index, self.vectors)
        else:
            self.index = self._build(self.vectors)

    def search(self, queries: np.ndarray, k: int, threads: int | None = None,
               where: Filter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions), each (n_queries, k'), k' = min(k, len); best first.

        `threads` caps faiss's OpenMP threads for this call: a single query right after a
        torch forward pass runs faster on one thread than with two pools fighting for cores.
        `where` keeps only rows whose metadata match; fewer than k' matches pad with -1.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(int(k), len(self))
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if where is not None:
            return self._search_filtered(queries, k, threads, where)
        return self._search(queries, k, threads)

    def _allowed(self, where: Filter) -> np.ndarray:
        """Positions matching `where`, cached for repeated queries with the same filter."""
        key = (where.text, self._count, id(self._metadata))
        if self._mask_cache is None or self._mask_cache[:3] != key:
            rows = np.fromiter((where.matches(row) for row in self.metadata), bool, self._count)
            self._mask_cache = (*key, np.flatnonzero(rows).astype(np.int64))
        return self._mask_cache[3]

    def _search_filtered(self, queries: np.ndarray, k: int, threads: int | None,
                         where: Filter) -> tuple[np.ndarray, np.ndarray]:
        allowed = self._allowed(where)
        n = len(queries)
        scores = np.full((n, k), -np.inf, np.float32)
        positions = np.full((n, k), -1, np.int64)
        if len(allowed) == 0:
            return scores, positions
        # Few matches: exact search over just those rows is cheap and never misses one, which
        # a graph or inverted-list search restricted to a tiny subset can.
        if self.index is None or len(allowed) <= max(FILTER_EXACT_ROWS, len(self) // 20):
            sims = queries @ self.get_vectors(allowed).T
            top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            found = top.shape[1]
            scores[:, :found] = np.take_along_axis(sims, top, 1)
            positions[:, :found] = allowed[top]
            return scores, positions
        selector = faiss.IDSelectorBatch(allowed)
        if self.kind == "hnsw":
            search_params = faiss.SearchParametersHNSW(
                sel=selector, efSearch=max(int(self.params["ef_search"]), k))
        elif self.kind == "ivfpq":
            search_params = faiss.SearchParametersIVF(sel=selector,
                                                      nprobe=int(self.params["nprobe"]))
        else:
            search_params = faiss.SearchParameters(sel=selector)
        return self._search(queries, k, threads, search_params)

    def _search(self, queries: np.ndarray, k: int, threads: int | None,
                search_params: faiss.SearchParameters | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        index = self.index
        if index is None:  # untrained IVF-PQ: few vectors, so exact search is cheap
            index = faiss.IndexFlatIP(self.dim)
            self._add_chunked(index, self.vectors)
        rerank = int(self.params.get("rerank", 0)) if self.kind == "ivfpq" else 0
        fetch = min(k * rerank, len(self)) if rerank > 1 and self.index is not None else k
        before = faiss.omp_get_max_threads()
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        try:
            scores, positions = index.search(queries, fetch, params=search_params)
        finally:
            faiss.omp_set_num_threads(before)
        return self._rescore(queries, positions, k) if fetch > k else (scores, positions)

    def _rescore(self, queries: np.ndarray, candidates: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of compressed-search candidates: PQ's ranking error goes away
        at the cost of reading rerank x k stored vectors per query."""
        valid = candidates >= 0
        rows = np.asarray(self.vectors)[np.where(valid, candidates, 0).ravel()]
        exact = np.einsum("qcd,qd->qc", rows.reshape(*candidates.shape, self.dim), queries)
        exact = np.where(valid, exact, -np.inf).astype(np.float32)
        top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(exact, top, 1), np.take_along_axis(candidates, top, 1)

    # --- persistence -------------------------------------------------------------------
    def save(self, folder: Path, stem: str) -> dict[str, str]:
        """Write this generation's files; returns role -> file name for the manifest."""
        files = {"vectors": f"{stem}.npy"}
        atomic_save_npy(folder / files["vectors"], np.asarray(self.vectors))
        if self.kind != "flat" and self.index is not None:
            files["faiss"] = f"{stem}.faiss"
            blob = faiss.serialize_index(self.index)
            atomic_write(folder / files["faiss"], lambda handle: handle.write(blob.tobytes()))
        return files

    @classmethod
    def load(cls, folder: Path, files: dict[str, str], dim: int, kind: str, params: dict,
             metadata: list[dict] | Callable[[], list[dict]] | None = None) -> FaissStore:
        try:
            vectors = np.load(folder / files["vectors"], mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"cannot read vectors {files['vectors']}: {exc}") from exc
        if vectors.ndim != 2 or vectors.shape[1] != dim or vectors.dtype != np.float32:
            raise IndexCorruptError(
                f"{files['vectors']} has shape {vectors.shape}, expected (n, {dim})")
        index = None
        if "faiss" in files:
            index = faiss.read_index(str(folder / files["faiss"]))
            if index.ntotal != len(vectors):
                raise IndexCorruptError(f"{files['faiss']} holds {index.ntotal} vectors, "
                                        f"the vectors file {len(vectors)}")
            if kind == "hnsw":
                index.hnsw.efSearch = int(params.get("ef_search", 128))
            if kind == "ivfpq":
                index.nprobe = int(params.get("nprobe", 64))
        return cls(dim, kind, params, vectors, index, metadata)

    def bytes_per_vector(self) -> float:
        """Memory the search structure holds per vector (serialized size / count)."""
        if len(self) == 0 or self.index is None:
            return 0.0
        return faiss.serialize_index(self.index).size / len(self)
