"""Retrieval within one modality (CUSA's uni-modal columns): every item queries all the
others; its positives are the other items of its group; the query itself is no answer.

Groups: image->image on a class-labelled set, the images of one class; text->text on a
caption set, the other captions of the same image. Items alone in their group have nothing
to find and do not query (they stay in the gallery as negatives).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from crossmodal.metrics.ranks import positive_ranks, require_finite
from crossmodal.metrics.retrieval import DEFAULT_KS, direction_metrics


def evaluate_within(embeddings: np.ndarray, groups: Sequence[Hashable],
                    ks: Sequence[int] = DEFAULT_KS, ties: str = "pessimistic") -> dict:
    """{"within": R@K, MedR, MnR, MRR, mAP@R, R-P; "queries", "gallery"}."""
    if len(groups) != len(embeddings):
        raise ValueError(f"{len(groups)} groups for {len(embeddings)} embeddings")
    require_finite(embedding=embeddings)
    members: dict[Hashable, list[int]] = defaultdict(list)
    for row, group in enumerate(groups):
        members[group].append(row)
    queries = [row for row, group in enumerate(groups) if len(members[group]) > 1]
    positives = [[other for other in members[groups[row]] if other != row] for row in queries]
    if not queries:
        raise ValueError("no group holds two items: nothing to retrieve")
    ranks = positive_ranks(embeddings[queries], embeddings, positives, ties, exclude=queries)
    return {"within": direction_metrics(ranks, ks), "queries": len(queries),
            "gallery": len(embeddings) - 1, "ties": ties}
