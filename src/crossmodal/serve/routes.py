"""The API routes: search three ways, items in and out, thumbnails, health and stats."""

# No `from __future__ import annotations`: FastAPI must resolve the local models at runtime.

import time
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, File, Form, Path, Response, UploadFile
from pydantic import BaseModel, Field

from crossmodal.collection.collection import Hit as EngineHit
from crossmodal.collection.collection import normal_target
from crossmodal.errors import BadInputError
from crossmodal.item_ids import normal_item_id, normal_query_id
from crossmodal.models.score_thresholds import resolve_min_score
from crossmodal.serve import schemas
from crossmodal.serve.budget import DecodeGate
from crossmodal.serve.live import LiveCollection, NotFoundError, Upload
from crossmodal.serve.settings import ServeSettings
from crossmodal.serve.thumbnails import full_size_bytes, thumbnail_bytes


def _errors(*codes: int) -> dict:
    return {code: {"model": schemas.Problem} for code in codes}


# 403: a write from a foreign web page (RequestGuardMiddleware).
WRITE_ERRORS = _errors(403, 413)
# A change that could not be written (nothing of it was kept): 507 the disk is full, 503 an
# I/O error.
STORAGE_ERRORS = {**WRITE_ERRORS, **_errors(503, 507)}
# Threads that run changes, apart from the pool searches run in: changes wait there for the
# index's writer lock (another process may hold it for minutes), so a queue of uploads never
# takes the threads searches need.
CHANGE_THREADS = 4


def _hits_out(hits: list[EngineHit], target: str, started: float,
              note: str | None = None, live: LiveCollection | None = None,
              ) -> schemas.SearchResult:
    if not hits and target == "texts" and live is not None and not _holds_captions(live):
        note = "this index holds no captions: search images instead, or index captions " \
               "with the photos (`crossmodal index DIR --into INDEX --captions FILE`)"
    return schemas.SearchResult(
        target=target,
        hits=[schemas.Hit(rank=h.rank, score=h.score, id=h.id, kind=h.kind, item_id=h.item_id,
                          text=h.text, captions=h.captions,
                          thumbnail=f"/api/thumbnails/{h.item_id}") for h in hits],
        took_ms=round((time.perf_counter() - started) * 1000, 3), note=note,
    )


def _holds_captions(live: LiveCollection) -> bool:
    with live.reading() as collection:
        return len(collection.texts) > 0


def _cutoff(live: LiveCollection, spec: float | str | None,
            text: str | None = None) -> float | None:
    """The cosine cut-off a request's min_score names for the index's model (its encoder
    matches the index's manifest; no read lease: a caller may already hold one, and the
    lock is not reentrant)."""
    return resolve_min_score(spec, live.encoder.model_id, live.encoder.fingerprint, text)


def _above(hits: list[EngineHit], cutoff: float | None) -> list[EngineHit]:
    return hits if cutoff is None else [h for h in hits if h.score >= cutoff]


def _lookup_id(raw: str, captions: bool = False) -> str:
    """The id a URL or body names (`captions`: or ITEM#K) in its normal spelling; 404 if it
    can name nothing."""
    what = "item or caption" if captions else "item"
    try:
        return normal_query_id(raw) if captions else normal_item_id(raw)
    except BadInputError as exc:
        raise NotFoundError(f"no {what} {raw[:200]!r} in the index: {exc}") from None


ItemId = Annotated[str, Path(min_length=1, max_length=512,
                             description="An indexed item id (e.g. 'beach/dog.jpg').")]


@dataclass(frozen=True)
class _Deps:
    """What the route groups share."""

    live: LiveCollection
    settings: ServeSettings
    decodes: DecodeGate
    guarded: list  # the bearer scheme in the schema, only when the server has a token
    model_size: int
    change_threads: anyio.CapacityLimiter

    def read_upload(self, file: UploadFile) -> Upload:
        data = file.file.read(self.settings.max_body_bytes + 1)
        return Upload.decode(data, self.settings.max_pixels, target_size=self.model_size,
                             reserve=self.decodes.reserve)

    async def change(self, function, *args):  # noqa: ANN001, ANN201 - any change's result
        """`function(*args)` on a change thread; the request waits as a coroutine."""
        return await anyio.to_thread.run_sync(function, *args, limiter=self.change_threads)


def _status_routes(router: APIRouter, deps: _Deps) -> None:
    live = deps.live

    @router.get("/health", response_model=schemas.Health)
    async def health() -> schemas.Health:  # on the event loop: no thread, no lock to wait for
        return schemas.Health(status="ok")

    @router.get("/stats", response_model=schemas.Stats, dependencies=deps.guarded)
    def stats() -> schemas.Stats:
        with live.reading() as collection:
            info = collection.stats()
        return schemas.Stats(**{k: info[k] for k in schemas.Stats.model_fields})


def _search_routes(router: APIRouter, deps: _Deps) -> None:
    live, settings, guarded = deps.live, deps.settings, deps.guarded
    K = schemas.result_count(settings.max_k)

    class TextQuery(BaseModel):
        query: str = Field(min_length=1, max_length=settings.max_query_chars,
                           description="English or Chinese text, by the index's model.")
        k: K = 10
        target: schemas.TargetIn = Field("images", description="images, or captions "
                                         "(also spelled texts)")
        long_text: str = Field("head", max_length=16, pattern=schemas.LONG_TEXT_PATTERN,
                               description=schemas.LONG_TEXT_HELP)
        min_score: schemas.MinScore = None
        mode: schemas.Mode = None

    @router.post("/search/text", response_model=schemas.SearchResult, dependencies=guarded,
                 responses=WRITE_ERRORS)
    def search_text(body: TextQuery) -> schemas.SearchResult:
        started = time.perf_counter()
        if not body.query.strip():
            raise BadInputError("the query text is empty")
        target = normal_target(body.target)
        # a bad value fails before the encoder runs; the query's language picks the table
        cutoff = _cutoff(live, body.min_score, body.query)
        hits = live.search_text(body.query, k=body.k, target=target, long_text=body.long_text,
                                mode=body.mode, min_score=cutoff)
        note = None if body.mode == "keyword" else live.query_note(body.query)
        return _hits_out(hits, target, started, note, live)

    @router.post("/search/image", response_model=schemas.SearchResult, dependencies=guarded,
                 responses=WRITE_ERRORS)
    def search_image(file: Annotated[UploadFile, File(description="A JPEG/PNG/WebP image.",
                                                      json_schema_extra=schemas.NOT_EMPTY)],
                     k: Annotated[int, Form(ge=1, le=settings.max_k)] = 10,
                     target: Annotated[schemas.TargetIn, Form()] = "images",
                     min_score: Annotated[str | None, Form(
                         max_length=16, description=schemas.MIN_SCORE_HELP)] = None,
                     ) -> schemas.SearchResult:
        started = time.perf_counter()
        target = normal_target(target)
        cutoff = _cutoff(live, min_score)
        upload = deps.read_upload(file)
        hits = live.search_image(upload.image, k=k, target=target)
        return _hits_out(_above(hits, cutoff), target, started, live=live)


def _like_route(router: APIRouter, deps: _Deps) -> None:
    live, settings, guarded = deps.live, deps.settings, deps.guarded
    K = schemas.result_count(settings.max_k)

    class LikeQuery(BaseModel):
        id: str = Field(min_length=1, max_length=512,
                        description="An item id (its image) or ITEM#K (its K-th caption).")
        k: K = 10
        target: schemas.TargetIn | None = Field(
            None, description="images or captions (also spelled texts). Default: the kind "
                              "of the query (images for an item id).")
        min_score: schemas.MinScore = None

    @router.post("/search/like", response_model=schemas.SearchResult, dependencies=guarded,
                 responses=WRITE_ERRORS)
    def search_like(body: LikeQuery) -> schemas.SearchResult:
        started = time.perf_counter()
        query_id = _lookup_id(body.id, captions=True)
        cutoff = _cutoff(live, body.min_score)
        with live.reading() as collection:
            try:
                hits = collection.search_like(query_id, k=body.k,
                                              target=normal_target(body.target),
                                              min_score=cutoff)
            except BadInputError:  # the only bad input left: an id not indexed
                # Named by the id alone: the engine's message holds the index's folder.
                raise NotFoundError(f"no item or caption '{query_id}' in the index") from None
            target = normal_target(body.target) or (
                "images" if query_id in collection else "texts")
        return _hits_out(hits, target, started, live=live)



def _item_routes(router: APIRouter, deps: _Deps) -> None:
    live, guarded = deps.live, deps.guarded

    @router.get("/items/{item_id:path}", response_model=schemas.Item, dependencies=guarded)
    def get_item(item_id: ItemId) -> schemas.Item:
        return schemas.item_out(live.item(_lookup_id(item_id)))

    @router.get("/thumbnails/{item_id:path}", dependencies=guarded,
                response_class=Response,
                responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG"}})
    def thumbnail(item_id: ItemId) -> Response:
        item = live.item(_lookup_id(item_id))
        data = thumbnail_bytes(item, deps.settings.thumbnail_size, deps.decodes.reserve)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=300"})

    @router.get("/images/{item_id:path}", dependencies=guarded, response_class=Response,
                responses={200: {"content": {"image/jpeg": {}},
                                 "description": "JPEG, the longest side at most full_size "
                                                "(2048) px"}})
    def full_size(item_id: ItemId) -> Response:
        """The item's image to view full size, by id (a path is never accepted)."""
        item = live.item(_lookup_id(item_id))
        data = full_size_bytes(item, deps.settings.full_size, deps.decodes.reserve)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=300"})


def _write_routes(router: APIRouter, deps: _Deps) -> None:
    live, settings = deps.live, deps.settings

    @router.post("/items", response_model=schemas.Item, status_code=201,
                 dependencies=deps.guarded, responses=STORAGE_ERRORS)
    async def add_item(file: Annotated[UploadFile, File(description="The image to index.",
                                                        json_schema_extra=schemas.NOT_EMPTY)],
                       captions: Annotated[str, Form(
                           max_length=20_000, description="Captions, one a line.")] = "",
                       id: Annotated[str | None, Form(
                           max_length=200, description="Item id (default: from the content).")
                       ] = None) -> schemas.Item:
        # async: the decode runs in the shared pool, the change on a change thread
        lines = [c for c in captions.splitlines() if c.strip()]
        if len(lines) > settings.max_captions:
            raise BadInputError(f"at most {settings.max_captions} captions per item")
        if any(len(c) > settings.max_query_chars for c in lines):
            raise BadInputError(f"captions are at most {settings.max_query_chars} "
                                "characters long")
        upload = await anyio.to_thread.run_sync(deps.read_upload, file)
        return schemas.item_out(await deps.change(live.add_upload, upload, lines, id or None))

    @router.delete("/items/{item_id:path}", response_model=schemas.Item,
                   dependencies=deps.guarded, responses=STORAGE_ERRORS)
    async def remove_item(item_id: ItemId) -> schemas.Item:
        return schemas.item_out(await deps.change(live.remove, _lookup_id(item_id)))
