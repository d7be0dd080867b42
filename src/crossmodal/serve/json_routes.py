"""JSON routes beside the multipart ones: query arithmetic, and images sent as base64.

A client that speaks only JSON (an agent, a script, infinity-style embedding clients) sends
an image as `image_base64` (standard base64, optionally a `data:image/...;base64,` URL). The
same caps apply as to an upload: the request body is capped (413 above it), the decoded image
is checked as an upload is (pixels, format), and text that is not base64 is a 400.
"""

# No `from __future__ import annotations`: FastAPI must resolve the local models at runtime.

import base64
import binascii
import time

import anyio
from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from crossmodal.collection.collection import normal_target, parse_filter
from crossmodal.errors import BadInputError
from crossmodal.models.long_text import encode_long_texts, parse_long_text
from crossmodal.query_terms import MAX_TERMS, MAX_WEIGHT, QueryTerm, combined_vector
from crossmodal.serve import schemas
from crossmodal.serve.live import LiveCollection, NotFoundError, Upload
from crossmodal.serve.routes import (
    STORAGE_ERRORS,
    WRITE_ERRORS,
    _above,
    _cutoff,
    _Deps,
    _hits_out,
    _lookup_id,
)

IMAGE_BASE64_HELP = ("The image's bytes (JPEG, PNG, WebP, GIF or BMP) in standard base64, "
                     "or a data: URL holding them.")


def decode_base64_image(text: str, deps: _Deps) -> Upload:
    """An `image_base64` field as a decoded upload (the body cap already bounds its size)."""
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise BadInputError("image_base64: a data: URL must be 'data:<type>;base64,<data>'")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadInputError("image_base64 is not valid base64 (A-Z a-z 0-9 + / and = "
                            "padding)") from None
    if not data:
        raise BadInputError("image_base64 is empty")
    return Upload.decode(data, deps.settings.max_pixels, target_size=deps.model_size,
                         reserve=deps.decodes.reserve)


class _LiveSide:
    """Turns terms into vectors for a served index: encoding outside any lease, an indexed
    item's vector read under one."""

    def __init__(self, live: LiveCollection):
        self.live = live

    def text_query(self, text: str, long_text: str | None = None):
        if not text.strip():
            raise BadInputError("a query term's text is empty")
        return encode_long_texts(self.live.encoder, [text.strip()], parse_long_text(long_text))

    def image_query(self, image):
        return self.live.encoder.encode_images([image])

    def indexed_query(self, item_id: str):
        with self.live.reading() as collection:
            try:
                return collection.indexed_query(item_id)
            except BadInputError:  # named by the id alone, not the index's folder
                raise NotFoundError(f"no item or caption '{item_id}' in the index") from None


def json_routes(router: APIRouter, deps: _Deps) -> None:
    """Add the JSON routes to the /api router."""
    _combined_route(router, deps)
    _image_route(router, deps)
    if deps.settings.allow_writes:
        _add_item_route(router, deps)


def _image_route(router: APIRouter, deps: _Deps) -> None:
    live = deps.live

    class ImageQuery(BaseModel):
        image_base64: str = Field(min_length=1, description=IMAGE_BASE64_HELP)
        k: schemas.result_count(deps.settings.max_k) = 10
        target: schemas.TargetIn = "images"  # captions, also spelled texts
        min_score: schemas.MinScore = None
        where: schemas.Where = None
        sort: schemas.Sort = "relevance"

    @router.post("/search/image/base64", response_model=schemas.SearchResult,
                 dependencies=deps.guarded, responses=WRITE_ERRORS)
    def search_image_base64(body: ImageQuery) -> schemas.SearchResult:
        """As POST /api/search/image, with the image as base64 in a JSON body."""
        started = time.perf_counter()
        cutoff = _cutoff(live, body.min_score)
        where = parse_filter(body.where)
        upload = decode_base64_image(body.image_base64, deps)
        target = normal_target(body.target)
        hits = live.search_image(upload.image, k=body.k, target=target, where=where)
        return _hits_out(_above(hits, cutoff), target, started, live=live, sort=body.sort)


def _combined_route(router: APIRouter, deps: _Deps) -> None:
    live, settings, guarded = deps.live, deps.settings, deps.guarded
    K = schemas.result_count(settings.max_k)

    class Term(BaseModel):
        text: str | None = Field(None, min_length=1, max_length=settings.max_query_chars)
        image_base64: str | None = Field(None, description=IMAGE_BASE64_HELP)
        id: str | None = Field(None, min_length=1, max_length=512,
                               description="An indexed item id or ITEM#K (a caption).")
        weight: float = Field(1.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT,
                              description="How much the term counts; negative subtracts.")

        @model_validator(mode="after")
        def one_kind(self):
            if sum(x is not None for x in (self.text, self.image_base64, self.id)) != 1:
                raise ValueError("a term is exactly one of text, image_base64 or id")
            return self

    class CombinedQuery(BaseModel):
        terms: list[Term] = Field(min_length=1, max_length=MAX_TERMS)
        k: K = 10
        target: schemas.TargetIn = "images"  # captions, also spelled texts
        min_score: schemas.MinScore = None
        long_text: str = Field("head", max_length=16, pattern=schemas.LONG_TEXT_PATTERN,
                               description=schemas.LONG_TEXT_HELP)
        where: schemas.Where = None
        sort: schemas.Sort = "relevance"

    def term_of(term: Term) -> QueryTerm:
        if term.text is not None:
            return QueryTerm("text", term.text, term.weight)
        if term.id is not None:
            return QueryTerm("like", _lookup_id(term.id, captions=True), term.weight)
        return QueryTerm("image", decode_base64_image(term.image_base64, deps).image,
                         term.weight)

    @router.post("/search/combined", response_model=schemas.SearchResult,
                 dependencies=guarded, responses=WRITE_ERRORS)
    def search_combined(body: CombinedQuery) -> schemas.SearchResult:
        """Query arithmetic: the normalised weighted sum of texts, images and indexed items
        (a negative weight subtracts), searched as one query."""
        started = time.perf_counter()
        cutoff = _cutoff(live, body.min_score)
        where = parse_filter(body.where)
        vector = combined_vector(_LiveSide(live), [term_of(t) for t in body.terms],
                                 body.long_text)
        target = normal_target(body.target)
        with live.reading() as collection:
            hits = collection.search_vectors(vector, body.k, target, threads=1,
                                             where=where, min_score=cutoff)[0]
        return _hits_out(hits, target, started, live=live, sort=body.sort)


def _add_item_route(router: APIRouter, deps: _Deps) -> None:
    settings = deps.settings

    class NewItem(BaseModel):
        image_base64: str = Field(min_length=1, description=IMAGE_BASE64_HELP)
        captions: list[str] = Field([], max_length=settings.max_captions)
        id: str | None = Field(None, max_length=200,
                               description="Item id (default: from the content).")

    @router.post("/items/base64", response_model=schemas.Item, status_code=201,
                 dependencies=deps.guarded, responses=STORAGE_ERRORS)
    async def add_item_base64(body: NewItem) -> schemas.Item:
        """As POST /api/items, with the image as base64 and the captions as a list."""
        lines = [c for c in body.captions if c.strip()]
        if any(len(c) > settings.max_query_chars for c in lines):
            raise BadInputError(f"captions are at most {settings.max_query_chars} "
                                "characters long")
        # as POST /api/items: the decode in the shared pool, the change on a change thread
        upload = await anyio.to_thread.run_sync(decode_base64_image, body.image_base64, deps)
        return schemas.item_out(await deps.change(deps.live.add_upload, upload, lines,
                                                  body.id or None))
