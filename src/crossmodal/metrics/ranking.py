"""Rank of the first positive per query, computed in chunks; R@K, MedR, MnR, Rsum.

Ties are counted pessimistically: a negative scoring exactly as high as the best positive
ranks above it, so a constant model scores worst, never best.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def first_positive_ranks(
    queries: np.ndarray,
    gallery: np.ndarray,
    positives: Sequence[Sequence[int]] | np.ndarray,
    chunk: int = 1024,
) -> np.ndarray:
    """1-based rank of the best-scoring positive of each query (pessimistic ties).

    `positives[i]` lists the gallery rows relevant to query i. Memory stays at chunk x gallery.
    """
    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ gallery.T
        for row, query in enumerate(range(start, min(start + chunk, len(queries)))):
            pos = np.asarray(positives[query], dtype=np.int64)
            if pos.size == 0:
                raise ValueError(f"query {query} has no positive")
            best = scores[row, pos].max()
            # Count every row scoring >= best, then subtract the positives among them.
            ahead = int(np.count_nonzero(scores[row] >= best))
            ahead -= int(np.count_nonzero(scores[row, pos] >= best))
            ranks[query] = ahead + 1
    return ranks


def summarize_ranks(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    out = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in ks}
    out["MedR"] = float(np.floor(np.median(ranks)) + 0.0) if len(ranks) else float("nan")
    out["MnR"] = float(np.mean(ranks))
    out["MRR"] = float(np.mean(1.0 / ranks))
    return out


def retrieval_report(
    image_emb: np.ndarray, text_emb: np.ndarray, text_image: Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, dict[str, float] | float]:
    """Both directions for a captioned-image set; text i describes image text_image[i]."""
    text_image = np.asarray(text_image)
    captions_of = [[] for _ in range(len(image_emb))]
    for text, image in enumerate(text_image):
        captions_of[image].append(text)
    i2t = summarize_ranks(first_positive_ranks(image_emb, text_emb, captions_of), ks)
    t2i = summarize_ranks(first_positive_ranks(text_emb, image_emb, text_image[:, None]), ks)
    rsum = sum(i2t[f"R@{k}"] + t2i[f"R@{k}"] for k in (1, 5, 10) if f"R@{k}" in i2t)
    return {"image_to_text": i2t, "text_to_image": t2i, "rsum": rsum}
