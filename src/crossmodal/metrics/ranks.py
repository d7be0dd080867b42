"""Ranks of every positive of every query, from a similarity matrix computed in chunks.

Tie rule: "pessimistic" (default) puts a negative that scores exactly as high as a positive
above it, so a model that gives every item the same score ranks last, never first;
"optimistic" puts it below. Positives tied with each other are interchangeable.
Memory stays at chunk x gallery, so 100k x 500k never needs the full matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

TIE_RULES = ("pessimistic", "optimistic")


def _padded(positives: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(p) for p in positives), default=0)
    index = np.zeros((len(positives), max(width, 1)), np.int64)
    mask = np.zeros_like(index, dtype=bool)
    for row, pos in enumerate(positives):
        if len(pos) == 0:
            raise ValueError(f"query {row} has no positive: drop it or give it one")
        index[row, : len(pos)] = pos
        mask[row, : len(pos)] = True
    return index, mask


def positive_ranks_from_scores(scores: np.ndarray, positives: Sequence[Sequence[int]],
                               ties: str = "pessimistic") -> np.ndarray:
    """(n_queries, max_positives) 1-based ranks, best positive first; padding is 0.

    The j-th best positive ranks at j + (negatives scoring >= it), or > it when optimistic.
    """
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, not {ties!r}")
    index, mask = _padded(positives)
    pos_scores = np.where(mask, np.take_along_axis(scores, index, axis=1), -np.inf)
    pos_scores = -np.sort(-pos_scores, axis=1)  # best first; padding (-inf) last
    compare = np.greater_equal if ties == "pessimistic" else np.greater
    # How many items of the whole row beat each positive, then remove the positives among them.
    beating_all = compare(scores[:, None, :], pos_scores[:, :, None]).sum(-1)
    beating_pos = compare(pos_scores[:, None, :], pos_scores[:, :, None]).sum(-1)
    negatives_ahead = beating_all - beating_pos
    order = np.arange(1, pos_scores.shape[1] + 1)[None, :]
    sorted_mask = np.sort(mask, axis=1)[:, ::-1]
    return np.where(sorted_mask, negatives_ahead + order, 0)


def positive_ranks(
    queries: np.ndarray, gallery: np.ndarray, positives: Sequence[Sequence[int]],
    ties: str = "pessimistic", chunk: int = 512,
    score_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Ranks of all positives per query, scoring `queries @ gallery.T` chunk by chunk."""
    score_fn = score_fn or (lambda q, g: q @ g.T)
    width = max((len(p) for p in positives), default=1)
    out = np.zeros((len(queries), max(width, 1)), np.int64)
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        scores = score_fn(queries[start:stop], gallery)
        ranks = positive_ranks_from_scores(scores, positives[start:stop], ties)
        out[start:stop, : ranks.shape[1]] = ranks
    return out
