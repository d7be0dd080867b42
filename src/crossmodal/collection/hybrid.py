"""Search modes for a text query: by vector (cosine), by keyword (BM25 over captions and file
names, crossmodal.index.keywords) or both, fused by reciprocal rank fusion.

Reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009): a hit's fused score is
the sum over the rankings that hold it of 1 / (RRF_K + rank), rank counted from 1, with the
customary RRF_K = 60. It needs no common scale: a cosine and a BM25 score cannot be added,
ranks can. Each ranking is cut at max(k, DEPTH) before fusing.

For images as the target, a keyword hit on a caption or a file name counts for its item's
image (the item scores its best document); for captions as the target, caption documents
only. `min_score` is a cosine cut-off: in hybrid mode it cuts the vector ranking before
fusing (a keyword match stays, whatever its cosine); keyword mode has no cosine to cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from crossmodal.collection.hits import Hit, normal_target
from crossmodal.collection.keyword_state import KeywordState
from crossmodal.collection.search_modes import DEFAULT_MODE, MODES
from crossmodal.errors import BadInputError
from crossmodal.index.filters import Filter
from crossmodal.index.keywords import KeywordHit
from crossmodal.index.metadata import item_metadata

RRF_K = 60
DEPTH = 100  # how much of each ranking is fused


class Collection(Protocol):
    """What a search here needs of crossmodal.collection.Collection."""

    items: list[dict]
    text_rows: list[tuple[str, int]]
    keywords: KeywordState

    def item(self, item_id: str) -> dict: ...

    def search_vectors(self, queries: np.ndarray, k: int, target: str, threads: int | None,
                       where: Filter | None, min_score: float | str | None
                       ) -> list[list[Hit]]: ...


def parse_mode(mode: str | None) -> str:
    """The search mode a user named (None: the default); a bad name is one clear line."""
    if mode is None:
        return DEFAULT_MODE
    if mode not in MODES:
        raise BadInputError(f"--mode must be one of {', '.join(MODES)}, not '{mode}'")
    return mode


def check_min_score(mode: str, min_score: object) -> None:
    if mode == "keyword" and min_score is not None:
        raise BadInputError("--min-score is a cosine cut-off: it applies to vector and hybrid "
                            "search, not to keyword search (BM25 scores have no fixed scale)")


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of rankings of keys, best first: (key, sum of 1 / (k + rank)).
    Ties go to the key ranked best in any ranking, then to the earlier ranking."""
    scores: dict[str, float] = {}
    best: dict[str, tuple[int, int]] = {}
    for which, ranking in enumerate(rankings):
        for rank, key in enumerate(ranking, 1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
            best[key] = min(best.get(key, (rank, which)), (rank, which))
    return sorted(scores.items(), key=lambda pair: (-pair[1], best[pair[0]]))


def search(col: Collection, text: str, vector: np.ndarray | None, k: int, target: str,
           where: Filter | None, min_score: float | str | None, mode: str) -> list[Hit]:
    """The `k` best hits of a text query in `mode`; `vector` is the query's embedding (not
    needed in keyword mode)."""
    check_min_score(mode, min_score)
    if mode == "vector":
        return col.search_vectors(vector, k, target, 1, where, min_score)[0]
    depth = max(k, DEPTH)
    words = keyword_hits(col, text, depth if mode == "hybrid" else k, target, where)
    if mode == "keyword":
        return words
    vectors = col.search_vectors(vector, depth, target, 1, where, min_score)[0]
    by_id = {hit.id: hit for hit in words}
    by_id.update({hit.id: hit for hit in vectors})
    fused = rrf([[h.id for h in vectors], [h.id for h in words]])[:k]
    out = []
    for rank, (hit_id, score) in enumerate(fused, 1):
        hit = by_id[hit_id]
        hit.rank, hit.score = rank, score
        out.append(hit)
    return out


def keyword_hits(col: Collection, text: str, k: int, target: str,
                 where: Filter | None) -> list[Hit]:
    """The `k` best BM25 hits: items (their best caption or file name) or captions."""
    target = normal_target(target)
    index = col.keywords.index(col.items, len(col.text_rows))
    keep = None
    if where is not None:
        def keep(item_id: str, caption: int) -> bool:
            item = col.item(item_id)
            if target == "images":
                return where.matches(item_metadata(item))
            return where.matches(item_metadata(item, "text", caption))
    if target == "images":
        found = index.search_items(text, k, keep)
    elif target == "texts":
        found = index.search(text, k, captions_only=True, keep=keep)
    else:
        raise BadInputError(f"target must be images or texts, not '{target}'")
    return [_hit(col, hit, rank, target) for rank, hit in enumerate(found, 1)]


def _hit(col: Collection, found: KeywordHit, rank: int, target: str) -> Hit:
    item = col.item(found.item_id)
    if target == "images":
        return Hit(rank, found.score, item["id"], "image", item["id"], item["path"],
                   captions=item["captions"])
    return Hit(rank, found.score, f"{item['id']}#{found.caption}", "text", item["id"],
               item["path"], text=item["captions"][found.caption], captions=item["captions"])
