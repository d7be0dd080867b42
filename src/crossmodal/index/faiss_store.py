"""Vectors plus a faiss index over them: exact inner product, HNSW or IVF-PQ.

The float32 vectors (.npy) are the source of truth, memory-mapped on open; the faiss index
is derived from them (exact search builds it at load, HNSW/IVF-PQ are saved beside them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from crossmodal.errors import BadInputError, IndexCorruptError
from crossmodal.index.storage import atomic_save_npy, atomic_write

INDEX_TYPES = ("flat", "hnsw", "ivfpq")
DEFAULT_PARAMS = {
    "flat": {},
    "hnsw": {"M": 32, "ef_construction": 80, "ef_search": 64},
    "ivfpq": {"nlist": 0, "m": 0, "nbits": 8, "nprobe": 16},  # 0: chosen from the data
}


@dataclass
class FaissStore:
    dim: int
    kind: str = "flat"
    params: dict = field(default_factory=dict)
    vectors: np.ndarray = None  # (n, dim) float32, maybe a read-only memmap
    index: faiss.Index = None

    def __post_init__(self) -> None:
        if self.kind not in INDEX_TYPES:
            raise BadInputError(
                f"unknown index type '{self.kind}' (known: {', '.join(INDEX_TYPES)})")
        self.params = {**DEFAULT_PARAMS[self.kind], **(self.params or {})}
        if self.vectors is None:
            self.vectors = np.zeros((0, self.dim), np.float32)
        if self.index is None:
            self.index = self._build(self.vectors)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

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
        divisors = [c for c in (64, 32, 16, 8, 4, 2, 1) if self.dim % c == 0]
        m = int(self.params["m"]) or next(c for c in divisors if c <= max(1, self.dim // 4))
        nbits = int(self.params["nbits"])
        if n < max(nlist, 2**nbits):
            raise BadInputError(
                f"IVF-PQ needs at least {max(nlist, 2**nbits)} vectors to train, got {n}: "
                "use --index-type flat or hnsw for small collections"
            )
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train = sample if n <= 100_000 else sample[rng.choice(n, 100_000, replace=False)]
        index.train(np.ascontiguousarray(train, dtype=np.float32))
        index.nprobe = int(self.params["nprobe"])
        self.params.update(nlist=nlist, m=m)
        return index

    def _build(self, vectors: np.ndarray) -> faiss.Index:
        if len(vectors) == 0 and self.kind == "ivfpq":
            return None  # trained on the first add
        index = self._new_index(vectors)
        self._add_chunked(index, vectors)
        return index

    @staticmethod
    def _add_chunked(index: faiss.Index, vectors: np.ndarray, chunk: int = 65536) -> None:
        for start in range(0, len(vectors), chunk):
            index.add(np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32))

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise BadInputError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        self.vectors = np.concatenate([np.asarray(self.vectors), vectors])
        if self.index is None:
            self.index = self._build(self.vectors)
        else:
            self._add_chunked(self.index, vectors)

    def remove(self, positions: np.ndarray) -> None:
        keep = np.ones(len(self), dtype=bool)
        keep[np.asarray(positions, dtype=np.int64)] = False
        self.vectors = np.ascontiguousarray(np.asarray(self.vectors)[keep])
        if self.kind == "ivfpq" and self.index is not None:
            self.index.reset()  # keep the trained quantizer; positions shift, so re-add
            self._add_chunked(self.index, self.vectors)
        else:
            self.index = self._build(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions), each (n_queries, k'), k' = min(k, len); best first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(int(k), len(self))
        if k <= 0 or self.index is None:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores, positions = self.index.search(queries, k)
        return scores, positions

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
    def load(cls, folder: Path, files: dict[str, str], dim: int, kind: str,
             params: dict) -> FaissStore:
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
                index.hnsw.efSearch = int(params.get("ef_search", 64))
            if kind == "ivfpq":
                index.nprobe = int(params.get("nprobe", 16))
        store = cls(dim=dim, kind=kind, params=params, vectors=vectors, index=index)
        return store

    def bytes_per_vector(self) -> float:
        """Memory the search structure holds per vector (serialized size / count)."""
        if len(self) == 0 or self.index is None:
            return 0.0
        return faiss.serialize_index(self.index).size / len(self)
