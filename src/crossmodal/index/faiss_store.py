"""Vectors plus a faiss index over them: exact inner product, HNSW or IVF-PQ.

Implements crossmodal.index.protocol.VectorStore. Row metadata lives in memory only (the engine
rebuilds it from its item list on open); a `where` filter selects rows from it, searched exactly
when few match, through the index with a faiss selector otherwise.

Rows are stored physically in the order they were added; removing one only marks it dead (a
tombstone), so a removal costs the same at 1k rows as at 1M and an HNSW graph is never rebuilt
for it. A row's position (what the engine sees) is its rank among the live rows. Dead rows are
skipped at search time and dropped when the engine writes a new generation with more than
PURGE_SHARE of them (the graph is rebuilt then, once for many removals).

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
from crossmodal.index.faiss_search import (
    exact_top_k,
    filter_rare_near,
    graph_beats_exact,
    selector_params,
)
from crossmodal.index.filters import Filter
from crossmodal.index.vector_rows import VectorRows
from crossmodal.storage import atomic_save_npy, atomic_write

INDEX_TYPES = ("flat", "hnsw", "ivfpq")
DEFAULT_PARAMS = {
    "flat": {},
    "hnsw": {"M": 32, "ef_construction": 80, "ef_search": 128},
    # nlist/m 0: chosen from the data when trained, once min_train vectors are there
    # rerank: fetch rerank x k candidates, rescore them exactly from the stored vectors
    # retrain_growth: retrain once the collection is this many times its training size
    "ivfpq": {"nlist": 0, "m": 0, "nbits": 8, "nprobe": 64, "min_train": 10_000, "rerank": 10,
              "retrain_growth": 4},
}
# A filter matching at most this many rows (or FILTER_EXACT_SHARE of them) is searched exactly
# over just those rows.
FILTER_EXACT_ROWS = 20_000
FILTER_EXACT_SHARE = 0.05
# A generation written with more dead rows than this share drops them (and rebuilds the index).
PURGE_SHARE = 0.2
# Rows a log may add to an HNSW store before a whole save is due: every open replays them as
# graph inserts (about 1 ms each at 1M rows).
MAX_LOG_GRAPH_ROWS = 20_000


def pq_subvectors(dim: int) -> int:
    """Default product-quantiser sub-vectors: the largest of 64..1 dividing dim, <= dim / 4."""
    return next(c for c in (64, 32, 16, 8, 4, 2, 1) if dim % c == 0 and c <= max(1, dim // 4))


@dataclass
class FaissStore:
    keeps_log = True  # changes go to the folder's log between whole saves (VectorStore)
    dim: int
    kind: str = "flat"
    params: dict = field(default_factory=dict)
    initial_vectors: InitVar[np.ndarray | None] = None  # (n, dim) float32, maybe a memmap
    index: faiss.Index | None = None  # None: IVF-PQ not trained yet (searched exactly)
    # one dict per initial (live) row, or a function making them when a filter first needs them
    initial_metadata: InitVar[list[dict] | Callable[[], list[dict]] | None] = None
    alive: np.ndarray | None = None  # bool per physical row; None: all alive
    # Filters matching at most max(rows, share x live rows) are searched exactly (rows 0:
    # never); None: the module's FILTER_EXACT_ROWS / FILTER_EXACT_SHARE.
    filter_exact_rows: int | None = None
    filter_exact_share: float | None = None
    # Past that size: scan where that is cheaper than an HNSW walk, or where the filter's
    # rows are rare near a query (faiss_search); False: always walk (to measure the walk).
    filter_planner: bool = True

    def __post_init__(self, initial_vectors: np.ndarray | None,
                      initial_metadata: list[dict] | Callable[[], list[dict]] | None) -> None:
        if self.kind not in INDEX_TYPES:
            raise BadInputError(
                f"unknown index type '{self.kind}' (known: {', '.join(INDEX_TYPES)})")
        self.params = {**DEFAULT_PARAMS[self.kind], **(self.params or {})}
        first = np.zeros((0, self.dim), np.float32) if initial_vectors is None else initial_vectors
        # Appends go to a growing buffer beside the loaded rows, joined only when the whole
        # matrix is needed, so adding batch by batch stays linear in the collection size.
        self._rows = VectorRows(first, self.dim)
        self._count = len(first)  # physical rows, dead ones included
        if self.alive is not None and len(self.alive) != self._count:
            raise IndexCorruptError(f"{len(self.alive)} liveness flags for {self._count} rows")
        self._dead = 0 if self.alive is None else int(self._count - self.alive.sum())
        if self.alive is not None:
            self.alive = np.array(self.alive, dtype=bool)  # writable, not a memmap
        self._version = 0  # bumped by every change: keys the caches below
        self._cache: dict[str, tuple[object, object]] = {}
        self._metadata: list[dict] | None = None
        self._metadata_source = initial_metadata if callable(initial_metadata) else None
        # Rows added before a filter first needs the metadata wait here, so an add or a
        # removal never has to build every row's metadata.
        self._source_ids = self._live_ids().copy() if callable(initial_metadata) else None
        self._appended: list[dict] = []
        if not callable(initial_metadata):
            rows = list(initial_metadata or [{}] * len(self))
            if len(rows) != len(self):
                raise BadInputError(f"{len(rows)} metadata rows for {len(self)} vectors")
            self._metadata = self._spread(rows, self._live_ids(), self._count)
        self.exact_fallbacks = 0  # queries a filtered index search left short of k
        self.rare_scans = 0  # walked queries scanned again: the filter was rare near them
        self.rebuilt = False  # the index was (re)trained or rebuilt since the last save
        if self.index is None:
            self.index = self._build(first)

    # --- rows: physical ids and positions --------------------------------------------
    def __len__(self) -> int:
        return self._count - self._dead

    @property
    def tombstones(self) -> int:
        """Removed rows still held (skipped by searches) until the next purge."""
        return self._dead

    @property
    def physical_rows(self) -> int:
        return self._count

    def _cached(self, name: str, make: Callable[[], object]) -> object:
        hit = self._cache.get(name)
        if hit is None or hit[0] != self._version:
            hit = (self._version, make())
            self._cache[name] = hit
        return hit[1]

    def _live_ids(self) -> np.ndarray:
        """Physical id of each position (position = rank among live rows)."""
        if self.alive is None or not self._dead:
            return np.arange(self._count, dtype=np.int64)
        return self._cached("live", lambda: np.flatnonzero(self.alive).astype(np.int64))

    def _positions_of(self, ids: np.ndarray) -> np.ndarray:
        """Physical ids (-1 = none) to positions."""
        if not self._dead:
            return ids
        rank = self._cached("rank", lambda: np.cumsum(self.alive, dtype=np.int64) - 1)
        return np.where(ids >= 0, rank[np.maximum(ids, 0)], -1)

    @staticmethod
    def _spread(rows: list[dict], ids: np.ndarray, count: int) -> list[dict]:
        """Metadata of rows `ids` laid out by physical id ({} for the others)."""
        if len(ids) == count:
            return rows
        spread: list[dict] = [{}] * count
        for physical, row in zip(ids.tolist(), rows, strict=True):
            spread[physical] = row
        return spread

    @property
    def _physical(self) -> np.ndarray:
        return self._rows.joined()

    @property
    def vectors(self) -> np.ndarray:
        """The live rows' vectors in position order (a copy when some rows are dead)."""
        return self._physical if not self._dead else np.asarray(self._physical)[self._live_ids()]

    @property
    def metadata(self) -> list[dict]:
        """Metadata by physical id (dead rows hold {})."""
        if self._metadata is None:
            rows, ids = list(self._metadata_source()), self._source_ids
            if len(rows) != len(ids):
                raise IndexCorruptError(f"{len(rows)} metadata rows for {len(ids)} vectors")
            base = self._count - len(self._appended)
            self._metadata = self._spread(rows, ids, base) + self._appended
            self._appended = []
        return self._metadata

    def get_vectors(self, positions: np.ndarray) -> np.ndarray:
        ids = self._live_ids()[np.asarray(positions, dtype=np.int64)]
        return self._rows[ids]

    def committed(self) -> None:
        """Nothing deferred: every generation's files are complete when save returns."""

    def close(self) -> None:
        """No connection to release."""

    # --- building ------------------------------------------------------------------------
    def _new_index(self, sample: np.ndarray) -> faiss.Index:
        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, int(self.params["M"]), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(self.params["ef_construction"])
            index.hnsw.efSearch = int(self.params["ef_search"])
            return index
        return self._trained_ivfpq(sample)

    def _trained_ivfpq(self, sample: np.ndarray) -> faiss.Index:
        # nlist/m the user left at 0 are chosen from the data, again at every retraining.
        chosen = self.params.setdefault(
            "from_data", [key for key in ("nlist", "m") if not int(self.params[key])])
        n = len(sample)
        nlist = (max(1, min(4096, int(4 * np.sqrt(max(n, 1))))) if "nlist" in chosen
                 else int(self.params["nlist"]))
        m = pq_subvectors(self.dim) if "m" in chosen else int(self.params["m"])
        nbits = int(self.params["nbits"])
        if n < max(nlist, 2**nbits):  # fewer than 256 vectors per code book trains poorly
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
        # trained_on: the collection's size when trained (retrain once it has grown enough)
        self.params.update(nlist=nlist, m=m, trained_on=n, training_vectors=len(train))
        self.rebuilt = True
        return index

    def _build(self, vectors: np.ndarray) -> faiss.Index | None:
        """A fresh index over `vectors` (all live: call after purging)."""
        if self.kind == "ivfpq" and len(vectors) < max(int(self.params["min_train"]), 256):
            return None  # too few to train on: searched exactly until there are enough
        index = self._new_index(vectors)
        self._add_chunked(index, vectors, 0)
        return index

    def _add_chunked(self, index: faiss.Index, vectors: np.ndarray, first_id: int,
                     chunk: int = 65536) -> None:
        for start in range(0, len(vectors), chunk):
            part = np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32)
            if self.kind == "ivfpq":  # IVF drops removed ids: later ids are given explicitly
                ids = np.arange(first_id + start, first_id + start + len(part), dtype=np.int64)
                index.add_with_ids(part, ids)
            else:
                index.add(part)

    def add(self, vectors: np.ndarray, metadata: list[dict] | None = None) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise BadInputError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        if metadata is not None and len(metadata) != len(vectors):
            raise BadInputError(f"{len(metadata)} metadata rows for {len(vectors)} vectors")
        if self.index is None:  # untrained IVF-PQ: train now if there are enough (may raise)
            self.purge()
            combined = np.concatenate([np.asarray(self._physical), vectors])
            self.index = self._build(combined)
            self._rows = VectorRows(combined, self.dim)
        else:
            self._add_chunked(self.index, vectors, self._count)
            self._rows.append(vectors)
        rows = metadata if metadata is not None else [{}] * len(vectors)
        (self._appended if self._metadata is None else self._metadata).extend(rows)
        if self.alive is not None:
            self.alive = np.concatenate([self.alive, np.ones(len(vectors), bool)])
        self._count += len(vectors)
        self._version += 1

    def remove(self, positions: np.ndarray) -> None:
        """Mark rows dead: O(removed) work plus one pass over a bool per row."""
        ids = np.unique(self._live_ids()[np.asarray(positions, dtype=np.int64)])
        if not len(ids):
            return
        if self.alive is None:
            self.alive = np.ones(self._count, bool)
        self.alive[ids] = False  # a dead row's metadata stays: masks are and-ed with alive
        self._dead += len(ids)
        self._version += 1
        if self.kind == "ivfpq" and self.index is not None:  # cheap for inverted lists
            self.index.remove_ids(faiss.IDSelectorBatch(ids))

    def purge(self) -> bool:
        """Drop dead rows for good, rebuilding the index (HNSW: a new graph); positions keep."""
        if not self._dead:
            return False
        live = self._live_ids()
        self._rows = VectorRows(self._rows[live], self.dim)
        self._metadata = [self.metadata[i] for i in live.tolist()]
        self._count, self._dead, self.alive = len(live), 0, None
        self._version += 1
        if self.kind == "ivfpq" and self.index is not None:
            self.index.reset()  # keep the trained quantizer, renumber the rows
            self._add_chunked(self.index, self._physical, 0)
        else:
            self.index = self._build(self._physical)
        self.rebuilt = True
        return True

    def needs_retraining(self) -> bool:
        """IVF-PQ trained on a collection this one has outgrown (retrain_growth times)."""
        if self.kind != "ivfpq" or self.index is None:
            return False
        trained_on = int(self.params.get("trained_on", self.index.ntotal) or 1)
        return len(self) >= float(self.params["retrain_growth"]) * trained_on

    def retrain_if_due(self, force: bool = False) -> bool:
        """Retrain IVF-PQ when asked (`force`) or outgrown; True if it was retrained."""
        return (force or self.needs_retraining()) and self.retrain()

    def wants_full_save(self, log_rows: int) -> bool:
        """A whole save rather than a log record: the index was rebuilt or retrained, removed
        rows held pass PURGE_SHARE, or an HNSW graph would replay `log_rows` inserts per open."""
        return (self.rebuilt or self._dead > PURGE_SHARE * max(self._count, 1)
                or (self.kind == "hnsw" and log_rows > MAX_LOG_GRAPH_ROWS))

    def rebuilt_as(self, kind: str, params: dict | None,
                   metadata: Callable[[], list[dict]]) -> FaissStore:
        """A new store of `kind` over the same live vectors and their `metadata()` rows."""
        new = FaissStore(self.dim, kind, params)
        if len(self):
            new.add(np.asarray(self.vectors), metadata())
        return new

    def retrain(self) -> bool:
        """Train IVF-PQ afresh on all live vectors and re-encode them; False if not IVF-PQ."""
        if self.kind != "ivfpq" or len(self) < max(int(self.params["min_train"]), 256):
            return False
        self.purge()
        self.index = self._new_index(self._physical)
        self._add_chunked(self.index, self._physical, 0)
        self._version += 1
        return True

    # --- searching -----------------------------------------------------------------------
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
        if where is None and not self._dead:
            return self._search(queries, k, threads)
        return self._search_selected(queries, k, threads, where)

    def _allowed(self, where: Filter | None) -> tuple[np.ndarray, int, np.ndarray]:
        """(bool per physical row: live and matching `where`, how many, faiss bitmap);
        cached per filter and version, so repeated queries pay for none of it."""
        def make() -> tuple[np.ndarray, int, np.ndarray]:
            if where is None:
                mask = self.alive
            else:
                mask = np.fromiter((where.matches(row) for row in self.metadata), bool,
                                   self._count)
                mask = mask & self.alive if self.alive is not None else mask
            return mask, int(mask.sum()), np.packbits(mask, bitorder="little")
        if len(self._cache) > 64:  # many distinct filters: keep memory bounded
            self._cache = {k: v for k, v in self._cache.items() if not k.startswith("where:")}
        return self._cached(f"where:{where.text if where is not None else ''}", make)

    def filter_plan(self, matching: int, k: int, filtered: bool = True) -> str:
        """"scan" (exact, over the `matching` rows) or "graph" (the index, with a selector)
        for a search restricted to `matching` live rows (`filtered`: by a `where`)."""
        rows = FILTER_EXACT_ROWS if self.filter_exact_rows is None else self.filter_exact_rows
        share = FILTER_EXACT_SHARE if self.filter_exact_share is None else self.filter_exact_share
        if self.index is None:
            return "scan"
        if filtered and rows > 0 and matching <= max(rows, int(len(self) * share)):
            return "scan"
        if self.filter_planner and not graph_beats_exact(self.kind, self.params, k, matching,
                                                         self._count):
            return "scan"
        return "graph"

    def _search_selected(self, queries: np.ndarray, k: int, threads: int | None,
                         where: Filter | None) -> tuple[np.ndarray, np.ndarray]:
        mask, matching, bitmap = self._allowed(where)
        n = len(queries)
        scores = np.full((n, k), -np.inf, np.float32)
        positions = np.full((n, k), -1, np.int64)
        if matching == 0:
            return scores, positions
        # Few matches: exact search over just those rows is cheap and never misses one.
        if self.filter_plan(matching, k, where is not None) == "scan":
            return self._exact(queries, k, np.flatnonzero(mask), scores, positions)
        share = matching / max(self._count, 1)
        params = selector_params(self.kind, self.params, faiss.IDSelectorBitmap(bitmap),
                                 k, share)
        found_scores, found = self._search(queries, k, threads, params)
        found = self._positions_of(found)
        # A graph or inverted-list walk can come back short of k although k rows match:
        # those queries are answered exactly over the matching rows (vectors are in memory).
        short = (found >= 0).sum(axis=1) < min(k, matching)
        self.exact_fallbacks += int(short.sum())
        if self.filter_planner and where is not None and self.kind == "hnsw":
            rare = filter_rare_near(self.index, queries, mask, share,
                                    int(self.params["ef_search"])) & ~short
            self.rare_scans += int(rare.sum())
            short |= rare
        if short.any():
            redo_s, redo_p = self._exact(queries[short], k, np.flatnonzero(mask),
                                         scores[short].copy(), positions[short].copy())
            found_scores[short], found[short] = redo_s, redo_p
        return found_scores, found

    def _exact(self, queries: np.ndarray, k: int, ids: np.ndarray, scores: np.ndarray,
               positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top_scores, top = exact_top_k(queries, self._rows, ids, k)
        found = top.shape[1]
        scores[:, :found] = top_scores
        positions[:, :found] = self._positions_of(ids[top])
        return scores, positions

    def _search(self, queries: np.ndarray, k: int, threads: int | None,
                search_params: faiss.SearchParameters | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Physical ids when given search_params (a selector), else positions (no dead rows)."""
        index = self.index
        if index is None:  # untrained IVF-PQ: few vectors, so exact search is cheap
            index = faiss.IndexFlatIP(self.dim)
            index.add(np.ascontiguousarray(self._physical, dtype=np.float32))
        rerank = int(self.params.get("rerank", 0)) if self.kind == "ivfpq" else 0
        fetch = min(k * rerank, self._count) if rerank > 1 and self.index is not None else k
        before = faiss.omp_get_max_threads()
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        try:
            scores, ids = index.search(queries, fetch, params=search_params)
        finally:
            faiss.omp_set_num_threads(before)
        return self._rescore(queries, ids, k) if fetch > k else (scores, ids)

    def _rescore(self, queries: np.ndarray, candidates: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of compressed-search candidates: PQ's ranking error goes away
        at the cost of reading rerank x k stored vectors per query."""
        valid = candidates >= 0
        rows = self._rows[np.where(valid, candidates, 0).ravel()]
        exact = np.einsum("qcd,qd->qc", rows.reshape(*candidates.shape, self.dim), queries)
        exact = np.where(valid, exact, -np.inf).astype(np.float32)
        top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(exact, top, 1), np.take_along_axis(candidates, top, 1)

    # --- persistence -------------------------------------------------------------------
    def save(self, folder: Path, stem: str) -> dict[str, str]:
        """Write this generation's files; returns role -> file name for the manifest.

        Dead rows past PURGE_SHARE are dropped first; fewer are kept, with a liveness file."""
        if self._dead > PURGE_SHARE * max(self._count, 1):
            self.purge()
        files = {"vectors": f"{stem}.npy"}
        atomic_save_npy(folder / files["vectors"], np.asarray(self._physical))
        if self._dead:
            files["alive"] = f"{stem}.alive.npy"
            atomic_save_npy(folder / files["alive"], self.alive)
        if self.kind != "flat" and self.index is not None:
            files["faiss"] = f"{stem}.faiss"
            blob = faiss.serialize_index(self.index)
            atomic_write(folder / files["faiss"], lambda handle: handle.write(blob.tobytes()))
        self.rebuilt = False
        return files

    @classmethod
    def load(cls, folder: Path, files: dict[str, str], dim: int, kind: str, params: dict,
             metadata: list[dict] | Callable[[], list[dict]] | None = None) -> FaissStore:
        try:
            vectors = np.load(folder / files["vectors"], mmap_mode="r")
            alive = np.load(folder / files["alive"]) if "alive" in files else None
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"cannot read vectors {files['vectors']}: {exc}") from exc
        if vectors.ndim != 2 or vectors.shape[1] != dim or vectors.dtype != np.float32:
            raise IndexCorruptError(
                f"{files['vectors']} has shape {vectors.shape}, expected (n, {dim})")
        index = None
        if "faiss" in files:
            index = faiss.read_index(str(folder / files["faiss"]))
            live = len(vectors) if alive is None else int(alive.sum())
            if index.ntotal not in (len(vectors), live):
                raise IndexCorruptError(f"{files['faiss']} holds {index.ntotal} vectors, "
                                        f"the vectors file {len(vectors)}")
            if kind == "hnsw":
                index.hnsw.efSearch = int(params.get("ef_search", 128))
            if kind == "ivfpq":
                index.nprobe = int(params.get("nprobe", 64))
        return cls(dim, kind, params, vectors, index, metadata, alive)

    def bytes_per_vector(self) -> float:
        """Memory the search structure holds per vector (serialized size / count)."""
        if len(self) == 0 or self.index is None:
            return 0.0
        return faiss.serialize_index(self.index).size / len(self)
