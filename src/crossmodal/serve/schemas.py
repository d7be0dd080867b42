"""Request and response bodies of the HTTP API (they make its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from crossmodal.collection.search_modes import DEFAULT_MODE
from crossmodal.collection.sorting import SORT_HELP

Target = Literal["images", "texts"]
# What a request may name: "captions" is the page's (and the docs') word for "texts".
TargetIn = Literal["images", "captions", "texts"]
MIN_SCORE_HELP = ("Drop hits scoring below this: a raw cosine, or auto / p90 / p50, the "
                  "cut-off calibrated for the index's model on Flickr8k val.")
MinScore = Annotated[float | Literal["auto", "p90", "p50"] | None,
                     Field(description=MIN_SCORE_HELP)]
MODE_HELP = ("vector (by meaning), keyword (BM25 over captions, text read off photos and file "
             "names) or hybrid (both, by reciprocal rank fusion). Default: " + DEFAULT_MODE +
             ". min_score is a cosine: it cuts the vector ranking (before fusing, in hybrid); "
             "keyword mode refuses it.")
Mode = Annotated[Literal["vector", "keyword", "hybrid"] | None, Field(description=MODE_HELP)]
# What parse_long_text takes, as the schema states it: @N with N >= 4, no leading zeros.
LONG_TEXT_PATTERN = r"^(head|tail|chunks|sentences)(@([4-9]|[1-9][0-9]{1,5}))?$"
LONG_TEXT_HELP = ("A query longer than the model's context: head, tail, chunks (pieces "
                  "averaged) or sentences (each sentence a piece), @N tokens (N at least 4).")
WHERE_HELP = ("Keep only hits whose metadata match (the filter language of `crossmodal "
              "search --where`), e.g. taken >= \"2024-06-01\" and camera like \"%iPhone%\", "
              "or near(48.85, 2.35, 5km).")
Where = Annotated[str | None, Field(max_length=2000, description=WHERE_HELP)]
Sort = Annotated[Literal["relevance", "taken", "taken:desc"], Field(description=SORT_HELP)]
NOT_EMPTY = {"minLength": 1}  # an uploaded file: an empty one is no image


def result_count(max_k: int) -> object:
    """The type of a query's `k`: an integer 1..max_k, strictly (JSON `true` is not 1)."""
    return Annotated[int, Field(ge=1, le=max_k, strict=True, description="How many results.")]


class Problem(BaseModel):
    detail: str = Field(description="What was wrong with the request and what to do.")


class Health(BaseModel):
    status: Literal["ok"]


class Stats(BaseModel):
    model: str
    dim: int
    index_type: str
    items: int
    images: int
    texts: int
    generation: int


class Item(BaseModel):
    id: str
    captions: list[str]
    thumbnail: str = Field(description="URL of the item's thumbnail (JPEG).")


class Photo(BaseModel):
    """What the photo's EXIF says, where it says it (crossmodal.data.exif)."""

    taken: str | None = Field(None, description="YYYY-MM-DDTHH:MM:SS, the camera's clock.")
    camera: str | None = None
    make: str | None = None
    model: str | None = None
    lat: float | None = None
    lon: float | None = None
    orientation: int | None = None
    width: int | None = Field(None, description="Pixels as viewed (after orientation).")
    height: int | None = None


class Hit(BaseModel):
    rank: int
    score: float
    id: str = Field(description="An item id, or ITEM#K for the K-th caption of an item.")
    kind: Literal["image", "text"]
    item_id: str
    text: str | None = None
    captions: list[str]
    thumbnail: str
    photo: Photo | None = None


class SearchResult(BaseModel):
    target: Target
    hits: list[Hit]
    took_ms: float
    note: str | None = Field(None, description="Set when the answer needs a word of "
                             "explanation: the query looks like a language the index's model "
                             "does not read, or the index holds no captions to return.")


def item_out(item: dict, prefix: str = "/api") -> Item:
    return Item(id=item["id"], captions=item["captions"],
                thumbnail=f"{prefix}/thumbnails/{item['id']}")


class DuplicateMember(BaseModel):
    id: str
    bytes: int | None = Field(description="The file's size when indexed.")
    similarity: float = Field(description="Cosine of its image vector with the group's "
                                          "first member's.")
    copy_of: str | None = Field(description="The first member with the same file bytes, "
                                            "if any.")
    thumbnail: str


class DuplicateGroup(BaseModel):
    size: int
    exact: bool = Field(description="Every member is a byte-for-byte copy of the first.")
    members: list[DuplicateMember] = Field(description="The largest file first.")


class Duplicates(BaseModel):
    model: str
    threshold: float = Field(description="The image-image cosine used.")
    hash_distance: int = Field(description="The perceptual-hash distance used (-1: off).")
    items: int = Field(description="Images looked at.")
    unhashed: int = Field(description="Images compared by vector only (flat, or without a "
                                      "perceptual hash and a readable file).")
    duplicates: int = Field(description="Images that are copies of another (each group's "
                                        "members but its first).")
    groups: list[DuplicateGroup] = Field(description="The biggest groups first.")
    took_ms: float
