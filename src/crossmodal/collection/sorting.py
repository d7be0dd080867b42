"""The order search results are shown in: by relevance (the default), or by when the photo
was taken (its EXIF date, crossmodal.data.exif).

A sort reorders the hits a search found (the k best, after `where` and `min_score`); it does
not pick the k oldest photos. Hits without a date come last, in relevance order, whichever
way the dates run; hits taken at the same moment keep their relevance order. Ranks are
renumbered to the new order (the score still says how relevant each one is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from crossmodal.errors import BadInputError

SORTS = ("relevance", "taken", "taken:desc")
_SPELLINGS = {"relevance": None, "score": None, "taken": False, "taken:asc": False,
              "taken:desc": True, "-taken": True}
SORT_HELP = ("relevance (default), taken (oldest first) or taken:desc (newest first): "
             "reorders the hits found by the photo's EXIF date; hits without one come last")


class _Sortable(Protocol):
    rank: int
    photo: dict


def parse_sort(spec: str | None) -> bool | None:
    """None: relevance order; False: oldest first; True: newest first. A BadInputError
    names the choices for anything else."""
    key = (spec or "relevance").strip().lower()
    if key not in _SPELLINGS:
        raise BadInputError(f"unknown sort {spec!r}: use {', '.join(SORTS)} (taken is oldest "
                            "first, taken:desc newest first)")
    return _SPELLINGS[key]


def sort_hits(hits: Sequence[_Sortable], spec: str | None) -> list:
    """`hits` in the order `spec` names (see parse_sort), ranks renumbered from 1."""
    newest_first = parse_sort(spec)
    if newest_first is None:
        return list(hits)
    dated = [h for h in hits if isinstance(h.photo.get("taken"), str)]
    undated = [h for h in hits if not isinstance(h.photo.get("taken"), str)]
    # sorted is stable, reverse=True too: equal dates stay in relevance order
    result = sorted(dated, key=lambda h: h.photo["taken"], reverse=newest_first) + undated
    for rank, hit in enumerate(result, 1):
        hit.rank = rank
    return result
