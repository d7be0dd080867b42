"""Sentence similarity (SentEval / CUSA's STS columns): Spearman x 100 of the cosine of two
sentences' embeddings with the human score, and Pearson beside it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from crossmodal.data.loader import encode_text_batches
from crossmodal.data.sts import StsPairs
from crossmodal.metrics.ranks import require_finite


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (scipy's rankdata 'average'; scipy is
    not a core dependency, and the tests check against it)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    scale = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / scale) if scale > 0 else 0.0


def pair_cosines(encode: Callable[[Sequence[str]], np.ndarray], pairs: StsPairs,
                 progress: bool = False) -> np.ndarray:
    """Cosine of each pair; every distinct sentence is embedded once."""
    sentences = list(dict.fromkeys([*pairs.first, *pairs.second]))
    row = {text: i for i, text in enumerate(sentences)}
    vectors = encode_text_batches(sentences, encode, desc=f"sentences ({pairs.name})",
                                  progress=progress)
    require_finite(sentence=vectors)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    a = vectors[[row[t] for t in pairs.first]]
    b = vectors[[row[t] for t in pairs.second]]
    return (a * b).sum(1)


def evaluate_sts(encode: Callable[[Sequence[str]], np.ndarray], pairs: StsPairs,
                 progress: bool = False) -> dict:
    # Rounded to 1e-6 (float32 noise is ~1e-7): two identical pairs (cosine 1) are a tie in
    # the ranking, whichever way the last bit of their float sums fell.
    cosines = np.round(pair_cosines(encode, pairs, progress), 6)
    return {"data": pairs.name, "pairs": len(pairs),
            "spearman": round(100 * pearson(average_ranks(cosines),
                                            average_ranks(pairs.scores)), 2),
            "pearson": round(100 * pearson(cosines.astype(np.float64), pairs.scores), 2)}


def evaluate_sts_files(encode: Callable[[Sequence[str]], np.ndarray],
                       sets: list[StsPairs], progress: bool = False) -> list[dict]:
    """Each set alone, and for two sets with the same rows both cross-lingual crossings."""
    rows = [evaluate_sts(encode, pairs, progress) for pairs in sets]
    if len(sets) == 2:
        first, second = sets
        rows += [evaluate_sts(encode, first.crossed(second), progress),
                 evaluate_sts(encode, second.crossed(first), progress)]
    return rows
