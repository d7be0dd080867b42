"""A search hit, as every search of a collection returns it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Hit:
    rank: int
    score: float  # a cosine; in keyword mode a BM25 score; in hybrid mode the fused score
    id: str  # item id for an image, "ITEM#K" for the K-th caption of an item
    kind: str  # "image" or "text"
    item_id: str
    path: str
    text: str | None = None
    captions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def normal_target(target: str | None) -> str | None:
    """'captions' (what the page and the docs call them) is the same target as 'texts'."""
    return "texts" if target == "captions" else target
