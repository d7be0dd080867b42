"""Search helpers for the faiss store: exact top-k over a subset, and selector-aware search
parameters that widen the search as a filter gets more selective."""

from __future__ import annotations

import math

import faiss
import numpy as np

# A selective filter makes HNSW walk past many rows it may not return: its candidate list
# grows as 1 / (share of rows allowed), up to this many.
MAX_FILTERED_EF = 4096


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray,
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


def selector_params(kind: str, params: dict, selector: faiss.IDSelector, k: int,
                    share: float) -> faiss.SearchParameters:
    """Search parameters restricted to `selector`, which allows `share` of the index's rows."""
    share = max(share, 1e-6)
    if kind == "hnsw":
        base = int(params["ef_search"])
        ef = max(base, k, min(MAX_FILTERED_EF, math.ceil(base / share)))
        return faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
    if kind == "ivfpq":
        nprobe = min(int(params["nlist"]), math.ceil(int(params["nprobe"]) / share))
        return faiss.SearchParametersIVF(sel=selector, nprobe=max(1, nprobe))
    return faiss.SearchParameters(sel=selector)
