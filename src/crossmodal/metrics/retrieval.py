"""Metrics from positive ranks, as the papers define them.

* R@K: 100 x share of queries with any positive in the top K (not IR recall).
* MedR / MnR: median / mean rank of the first positive. MRR: mean of 1 / that rank.
  MedR is VSE++'s: floor of the median of 0-based ranks, + 1 (= floor of the 1-based
  median), so it is always a whole rank.
* Mean Recall: mean of R@1, R@5, R@10 of one direction (CE-CLIP, Chinese-CLIP).
* R-Precision: share of the top R that are positive, R = number of positives (ECCV Caption).
* mAP@R: mean over i <= R of precision@i at each positive position i, divided by R.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10)


def recall_at_k(first: np.ndarray, k: int) -> float:
    return float(100.0 * np.mean(first <= k))


def map_at_r(ranks: np.ndarray) -> np.ndarray:
    """Per query, from the (n, max_pos) ranks matrix (0 = padding), sorted best first."""
    valid = ranks > 0
    r = valid.sum(1, keepdims=True)
    j = np.cumsum(valid, axis=1)
    hits = valid & (ranks <= r)
    precision = np.where(hits, j / np.maximum(ranks, 1), 0.0)
    return precision.sum(1) / r[:, 0]


def r_precision(ranks: np.ndarray) -> np.ndarray:
    valid = ranks > 0
    r = valid.sum(1, keepdims=True)
    return (valid & (ranks <= r)).sum(1) / r[:, 0]


def direction_metrics(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """All metrics of one retrieval direction from its positive-ranks matrix."""
    first = ranks[:, 0]
    out = {f"R@{k}": recall_at_k(first, k) for k in ks}
    out["MedR"] = float(np.floor(np.median(first)))  # VSE++: floor(median(first - 1)) + 1
    out["MnR"] = float(np.mean(first))
    out["MRR"] = float(np.mean(1.0 / first))
    if all(k in ks for k in DEFAULT_KS):
        out["MeanR"] = float(np.mean([out[f"R@{k}"] for k in DEFAULT_KS]))
    out["mAP@R"] = float(100.0 * np.mean(map_at_r(ranks)))
    out["R-P"] = float(100.0 * np.mean(r_precision(ranks)))
    return out
