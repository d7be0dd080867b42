"""How a text query finds a photo by the text read in it (captions of source "ocr").

An image encoder reads little of the text in a photo, and nothing of Chinese, so a search for
the words on a sign would miss the photo by image vectors alone. Each text->image search
(a query vector against the image store) also searches the "ocr" caption rows; a caption
that scores at least OCR_MATCH against the query (a text-to-text cosine: the query says what
the photo says) puts its photo first, ahead of the image-vector ranking, with that score and
the caption as the hit's `text`. The rest of the list is the image ranking as before, without
the photos already placed. An image query never reaches the cut-off (image-to-text cosines
are far lower), and an index without text read in its photos pays nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from crossmodal.data.ocr import OCR_SOURCE
from crossmodal.index.filters import Compare, Filter, Logic
from crossmodal.index.protocol import VectorStore

Hit = Any  # crossmodal.collection.collection.Hit (which imports this module)


class Searched(Protocol):
    """What matching read text needs of a collection."""

    items: list[dict]
    text_rows: list[tuple[str, int]]
    texts: VectorStore

    def stamp(self) -> tuple[int, int]: ...

    def _hit(self, target: str, position: int, score: float, rank: int) -> Hit: ...

# Text-to-text cosine above which an ocr caption matches a query. With fusion:bilingual a
# query scores 0.99 and up against its own sign's read text and at most ~0.55 against other
# signs' text sharing a word with it; descriptions of photos score far lower still
# (benchmarks/accuracy/ocr_search.py prints both).
OCR_MATCH = 0.6
_ONLY_OCR = Compare("caption_source", "==", OCR_SOURCE)


def ocr_filter(where: Filter | None) -> Filter:
    """The caption rows read in photos, among those `where` keeps."""
    if where is None:
        return Filter(f'caption_source = "{OCR_SOURCE}"', _ONLY_OCR)
    return Filter(f'caption_source = "{OCR_SOURCE}" and ({where.text})',
                  Logic("and", (_ONLY_OCR, where.tree)))


def holds_text(col: Searched) -> bool:
    """Whether any item has text read in its photo; counted once per state of the index."""
    key = (col.stamp(), len(col.items), len(col.text_rows))
    cached = getattr(col, "_ocr_state", None)
    if cached is None or cached[0] != key:
        cached = (key, any(item.get("caption_sources") for item in col.items))
        col._ocr_state = cached
    return cached[1]


def with_text_matches(col: Searched, queries: np.ndarray, results: list[list[Hit]], k: int,
                      threads: int | None, where: Filter | None,
                      cutoff: float | None) -> list[list[Hit]]:
    """`results` (image hits per query) with the photos whose read text matches the query
    first (see the module's docstring)."""
    if not holds_text(col):
        return results
    scores, positions = col.texts.search(np.atleast_2d(queries), k, threads, ocr_filter(where))
    floor = max(OCR_MATCH, cutoff if cutoff is not None else OCR_MATCH)
    merged = []
    for image_hits, srow, prow in zip(results, scores, positions, strict=True):
        matches = [col._hit("texts", int(pos), float(score), 0)
                   for score, pos in zip(srow, prow, strict=True)
                   if pos >= 0 and score >= floor]
        merged.append(_merge(matches, image_hits, k))
    return merged


def _merge(matches: list[Hit], image_hits: list[Hit], k: int) -> list[Hit]:
    """Photos matched by their text first (best caption each), then the image ranking."""
    placed: dict[str, Hit] = {}
    for match in matches:  # best first: the store ranks them
        if match.item_id not in placed:
            match.id, match.kind = match.item_id, "image"  # the photo is the answer
            placed[match.item_id] = match
    hits = list(placed.values()) + [h for h in image_hits if h.id not in placed]
    hits = hits[:k]
    for rank, hit in enumerate(hits, 1):
        hit.rank = rank
    return hits
