"""Search helpers for the faiss store: exact top-k over a subset, and selector-aware search
parameters that widen the search as a filter gets more selective."""

from __future__ import annotations

import math

import faiss
import numpy as np

from crossmodal.index.vector_rows import VectorRows

# A selective filter makes HNSW walk past many rows it may not return: its candidate list
# grows as 1 / (share of rows allowed), up to this many.
MAX_FILTERED_EF = 4096


def exact_top_k(queries: np.ndarray, vectors: np.ndarray | VectorRows, ids: np.ndarray,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k of `vectors[ids]` for each query: (scores, indices into ids), best first."""
    sims = queries @ np.asarray(vectors[ids], dtype=np.float32).T
    k = min(k, sims.shape[1])
    if sims.shape[1] > 4 * k:  # partial sort: O(n) instead of O(n log n) per query
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        top = np.take_along_axis(part, order, 1)
    else:
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, top, 1), top


def filtered_ef(params: dict, k: int, share: float) -> int:
    """HNSW's candidate list for a search restricted to `share` of the rows."""
    base = int(params["ef_search"])
    return max(base, k, min(MAX_FILTERED_EF, math.ceil(base / max(share, 1e-6))))


def graph_beats_exact(kind: str, params: dict, k: int, matching: int, total: int) -> bool:
    """Whether a filtered HNSW walk is cheaper than an exact scan of the `matching` rows.

    The walk computes about ef x 2M distances (its widened candidate list times the level-0
    degree) and still misses rows when the filter follows the content; the scan computes
    `matching` distances and misses none. So the graph is used only where it saves work: at
    1M rows a 6.4% filter is scanned (64k rows vs a 2,000 x 32 walk, which found 0.52 of the
    true top 10 on clustered data). IVF-PQ compares compressed codes, cheaper per row than a
    float scan, so its walk is always used (recall 0.97 on that case)."""
    if kind != "hnsw":
        return True
    return matching > filtered_ef(params, k, matching / max(total, 1)) * 2 * int(params["M"])


def filter_rare_near(index: faiss.Index, queries: np.ndarray, mask: np.ndarray, share: float,
                     probe: int) -> np.ndarray:
    """Per query: whether the filter's rows are rare among its `probe` nearest rows (under
    half their share of the whole index). A filtered HNSW walk starts near the query and
    stays there, so for such a query (a filter that follows the content, as 'folder =
    beach' for a query about cities) it collects matching rows that are not the nearest:
    at 200k clustered rows it found 0.53-0.67 of the true top 10 for 6-20% filters, and
    0.99 for filters on random rows. Those queries are scanned exactly instead. Costs one
    unfiltered walk per query (about what efSearch costs unfiltered)."""
    _, near = index.search(queries, probe)
    valid = near >= 0
    local = (mask[np.where(valid, near, 0)] & valid).sum(axis=1) / np.maximum(valid.sum(1), 1)
    return local < share / 2


def selector_params(kind: str, params: dict, selector: faiss.IDSelector, k: int,
                    share: float) -> faiss.SearchParameters:
    """Search parameters restricted to `selector`, which allows `share` of the index's rows."""
    share = max(share, 1e-6)
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=filtered_ef(params, k, share))
    if kind == "ivfpq":
        nprobe = min(int(params["nlist"]), math.ceil(int(params["nprobe"]) / share))
        return faiss.SearchParametersIVF(sel=selector, nprobe=max(1, nprobe))
    return faiss.SearchParameters(sel=selector)
