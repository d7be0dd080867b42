"""Ranks of every positive of every query, from a similarity matrix computed in chunks.

Tie rule: "pessimistic" (default) puts a negative that scores exactly as high as a positive
above it, so a model that gives every item the same score ranks last, never first;
"optimistic" puts it below. Positives tied with each other are interchangeable.
A positive listed twice for one query counts once (`_padded` de-duplicates, in order).
Scores with NaN or inf are refused (`NonFiniteError`): every comparison with NaN is False,
so NaN would rank every positive first.
Memory stays at chunk x gallery, so 100k x 500k never needs the full matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from crossmodal.errors import NonFiniteError

TIE_RULES = ("pessimistic", "optimistic")


def _padded(positives: Sequence[Sequence[int]], gallery: int) -> tuple[np.ndarray, np.ndarray]:
    """Positive indices padded to one width, and the mask of real ones; the one place where
    duplicates are dropped (a repeated positive would count the same item twice)."""
    distinct = [list(dict.fromkeys(int(p) for p in pos)) for pos in positives]
    width = max((len(p) for p in distinct), default=0)
    index = np.zeros((len(distinct), max(width, 1)), np.int64)
    mask = np.zeros_like(index, dtype=bool)
    for row, pos in enumerate(distinct):
        if len(pos) == 0:
            raise ValueError(f"query {row} has no positive: drop it or give it one")
        outside = [p for p in pos if not 0 <= p < gallery]
        if outside:
            raise ValueError(f"query {row} names positive {outside[0]}, outside the gallery "
                             f"of {gallery} items")
        index[row, : len(pos)] = pos
        mask[row, : len(pos)] = True
    return index, mask


def _non_finite_rows(values: np.ndarray) -> int:
    with np.errstate(over="ignore", invalid="ignore"):  # a sum that overflows is checked below
        if values.size == 0 or np.isfinite(values.sum()):  # one fast pass: NaN, inf propagate
            return 0
    return int((~np.isfinite(values)).reshape(len(values), -1).any(1).sum())


def require_finite(**named: np.ndarray) -> None:
    """Refuse arrays with NaN or inf rows, naming how many per array: they would rank as if
    perfect (`require_finite(image=..., text=...)`)."""
    counts = {what: _non_finite_rows(np.asarray(values)) for what, values in named.items()}
    if any(counts.values()):
        rows = " and ".join(f"{bad} of {len(named[what])} {what} rows"
                            for what, bad in counts.items())
        raise NonFiniteError(f"{rows} hold NaN or inf: the model or its weights are broken "
                             "(a diverged training?); fix them, metrics would be meaningless")


def _dot_cannot_overflow(queries: np.ndarray, gallery: np.ndarray) -> bool:
    """|q . g| <= d * max|q| * max|g| bounds every partial sum of the dot products too."""
    dtype = np.result_type(queries, gallery)
    if not np.issubdtype(dtype, np.floating) or queries.size == 0 or gallery.size == 0:
        return False
    bound = (float(np.abs(queries).max()) * float(np.abs(gallery).max())
             * queries.shape[-1])
    return bound < float(np.finfo(dtype).max)


def positive_ranks_from_scores(scores: np.ndarray, positives: Sequence[Sequence[int]],
                               ties: str = "pessimistic") -> np.ndarray:
    """(n_queries, max_positives) 1-based ranks, best positive first; padding is 0.

    The j-th best positive ranks at j + (negatives scoring >= it), or > it when optimistic.
    """
    scores = np.asarray(scores)
    require_finite(score=scores)
    return _ranks_of_finite_scores(scores, positives, ties)


def _ranks_of_finite_scores(scores: np.ndarray, positives: Sequence[Sequence[int]],
                            ties: str) -> np.ndarray:
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, not {ties!r}")
    index, mask = _padded(positives, scores.shape[1])
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
    exclude: Sequence[int] | None = None,
) -> np.ndarray:
    """Ranks of all positives per query, scoring `queries @ gallery.T` chunk by chunk.

    `exclude[i]`: a gallery row that is no answer to query i (its own row, when queries are
    drawn from the gallery: image->image, text->text); it ranks below every other row."""
    ranks_of = positive_ranks_from_scores  # checks every chunk of scores for NaN and inf
    if score_fn is None:
        score_fn = lambda q, g: q @ g.T  # noqa: E731
        require_finite(query=queries, gallery=gallery)
        if _dot_cannot_overflow(queries, gallery):  # then no score needs checking
            ranks_of = _ranks_of_finite_scores

    def scored(start: int) -> np.ndarray:
        scores = score_fn(queries[start:start + chunk], gallery)
        if exclude is not None and len(scores):
            rows = np.arange(len(scores))
            own = np.asarray(exclude[start:start + chunk], np.int64)
            # finite, so the NaN check still holds; strictly below every other score
            scores[rows, own] = scores.min() - 1.0
        return scores

    parts = [ranks_of(scored(start), positives[start:start + chunk], ties)
             for start in range(0, len(queries), chunk)]
    width = max((part.shape[1] for part in parts), default=1)
    out = np.zeros((len(queries), width), np.int64)
    start = 0
    for part in parts:
        out[start:start + len(part), : part.shape[1]] = part
        start += len(part)
    return out
