"""Query arithmetic, as rclip does it: several texts, images and indexed items, each weighted,
added or subtracted into one query vector.

    "golden retriever" + pool.jpg - "grass"     ->  normalise(v1 + v2 - v3)
    "2:golden retriever"                        ->  a term with weight 2

Each term's vector is unit length before weighting (a text and an image count alike), and the
sum is normalised again, so the result is a query like any other. How a written term is read
(`parse_term`): an optional weight prefix `W:` (a positive number), then `like:ID` for an
indexed item (its image, or ITEM#K for a caption), else a path to an existing file for an
image, else text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from crossmodal.errors import BadInputError
from crossmodal.item_ids import normal_query_id

Kind = Literal["text", "image", "like"]
MAX_TERMS = 16
MAX_WEIGHT = 100.0


@dataclass(frozen=True)
class QueryTerm:
    """One term: `value` is a text, an image (path, bytes or PIL image) or an indexed id;
    `weight` is signed (a term to subtract has a negative weight)."""

    kind: Kind
    value: str | Path | bytes | Image.Image
    weight: float = 1.0


class QuerySide(Protocol):
    """What turns terms into vectors: a Collection, or a server's view of one."""

    def text_query(self, text: str, long_text: str | None = None) -> np.ndarray: ...
    def image_query(self, image: str | Path | bytes | Image.Image) -> np.ndarray: ...
    def indexed_query(self, item_id: str) -> tuple[np.ndarray, str]: ...


def check_weight(weight: float, what: str = "a weight") -> float:
    if not math.isfinite(weight) or weight == 0 or abs(weight) > MAX_WEIGHT:
        raise BadInputError(f"{what} must be a non-zero number up to {MAX_WEIGHT:g}, "
                            f"not {weight}")
    return float(weight)


def split_weight(spec: str) -> tuple[float, str]:
    """'2:golden retriever' -> (2.0, 'golden retriever'); no number before a colon -> 1."""
    head, colon, rest = spec.partition(":")
    if colon:
        try:
            weight = float(head)
        except ValueError:
            return 1.0, spec
        if weight <= 0 or not math.isfinite(weight):
            raise BadInputError(f"the weight of {spec!r} must be a positive number "
                                "(subtract with --minus)")
        return check_weight(weight), rest
    return 1.0, spec


def parse_term(spec: str, sign: float = 1.0) -> QueryTerm:
    """A term as written on the command line (see the module's docstring)."""
    weight, rest = split_weight(spec)
    if rest.startswith("like:"):
        return QueryTerm("like", normal_query_id(rest[len("like:"):]), sign * weight)
    if Path(rest).is_file():
        return QueryTerm("image", Path(rest), sign * weight)
    if not rest.strip():
        raise BadInputError(f"the query term {spec!r} is empty")
    return QueryTerm("text", rest, sign * weight)


def term_vector(side: QuerySide, term: QueryTerm, long_text: str | None = None) -> np.ndarray:
    if term.kind == "text":
        vector = side.text_query(str(term.value), long_text)
    elif term.kind == "image":
        vector = side.image_query(term.value)
    elif term.kind == "like":
        vector = side.indexed_query(str(term.value))[0]
    else:
        raise BadInputError(f"a query term is a text, an image or an indexed id, not "
                            f"{term.kind!r}")
    return np.asarray(vector, np.float32).reshape(-1)


def combine(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """normalise(sum of weight * unit vector) as a (1, dim) query."""
    total = np.zeros_like(vectors[0], dtype=np.float64)
    for vector, weight in zip(vectors, weights, strict=True):
        total += weight * vector / max(float(np.linalg.norm(vector)), 1e-12)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise BadInputError("the query terms cancel out: nothing is left to search for")
    return (total / norm).astype(np.float32)[None, :]


def combined_vector(side: QuerySide, terms: Sequence[QueryTerm],
                    long_text: str | None = None) -> np.ndarray:
    """The (1, dim) query of weighted terms; at least one, at most MAX_TERMS, and at least
    one added (a query of subtractions alone points away from everything)."""
    if not terms:
        raise BadInputError("give at least one query term")
    if len(terms) > MAX_TERMS:
        raise BadInputError(f"at most {MAX_TERMS} query terms, not {len(terms)}")
    for term in terms:
        check_weight(term.weight, "a term's weight")
    if all(term.weight < 0 for term in terms):
        raise BadInputError("add at least one term: subtractions alone match nothing")
    return combine([term_vector(side, term, long_text) for term in terms],
                   [term.weight for term in terms])
