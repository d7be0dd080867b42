"""create_app: the FastAPI app over one index, with its safety settings applied."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from crossmodal.collection.targets import is_collection_uri
from crossmodal.data.ocr import TextReader
from crossmodal.errors import BadInputError, CrossmodalError, DiskFullError
from crossmodal.models.protocol import Encoder
from crossmodal.serve.api import build_router
from crossmodal.serve.budget import DecodeGate
from crossmodal.serve.live import LiveCollection, NotFoundError
from crossmodal.serve.security import (
    BodyLimitMiddleware,
    HostCheckMiddleware,
    RateLimiter,
    RequestGuardMiddleware,
)
from crossmodal.serve.settings import ServeSettings

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("crossmodal.serve")

# The page loads only its own script and the API's thumbnails (fetched as blobs).
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "style-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(index_path: str | Path, settings: ServeSettings | None = None,
               encoder: Encoder | None = None) -> FastAPI:
    """The app for the index at `index_path`; the index and its encoder load here, once."""
    settings = settings or ServeSettings()
    live = open_live(index_path, encoder, settings.uploads_dir,
                     TextReader() if settings.ocr else None)

    docs_assets = offline_docs_assets()
    app = FastAPI(
        title="crossmodal",
        summary="Image-text retrieval over one index: search by text, image or item; "
                "add and remove items.",
        version="1",
        # Served below from an installed package: the CDN pages are blank offline.
        **({"docs_url": None, "redoc_url": None} if docs_assets else {}),
    )
    app.state.live = live
    app.state.settings = settings
    decodes = DecodeGate(settings.max_parallel_decodes, settings.max_decode_bytes)
    api = build_router(live, settings, decodes)
    app.include_router(api)

    _add_error_handlers(app, api, Path(index_path))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if docs_assets:
        _add_offline_docs(app, docs_assets)

    _add_middleware(app, settings)
    return app


def open_live(index_path: str | Path, encoder: Encoder | None, uploads_dir: str,
              reader: TextReader | None = None):
    """The server's view of an index folder, or of a collection in Milvus (a URI); `reader`
    reads the text in uploaded photos (serve --ocr; folder indexes only)."""
    if is_collection_uri(index_path):
        from crossmodal.serve.live_milvus import MilvusLive

        if reader is not None:
            raise BadInputError("--ocr works on index folders, not on a collection in Milvus")
        return MilvusLive(str(index_path), encoder=encoder, uploads_dir=uploads_dir)
    return LiveCollection(index_path, encoder=encoder, uploads_dir=uploads_dir, reader=reader)


def offline_docs_assets() -> Path | None:
    """Swagger UI and ReDoc as files of the fastapi-offline package (the serve extra
    installs it); None without it: FastAPI's pages then load them from a CDN."""
    try:
        from importlib.resources import files

        folder = Path(str(files("fastapi_offline") / "static"))
    except ImportError:
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _add_offline_docs(app: FastAPI, assets: Path) -> None:
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    icon = "data:,"  # no favicon request at all (FastAPI's default is on the internet)

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title="crossmodal API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url=icon)

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> Response:
        return get_redoc_html(openapi_url=app.openapi_url, title="crossmodal API",
                              redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url=icon, with_google_fonts=False)


def public_detail(exc: BaseException, index_path: Path) -> str:
    """`exc`'s message without the server's paths: the file names of the OSErrors it came
    from shortened to their base names, the index folder named "the index"."""
    detail, seen = str(exc), set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError):
            for name in (cause.filename, cause.filename2):
                if name is not None and str(name).strip():
                    name = os.fsdecode(name)
                    detail = detail.replace(name, os.path.basename(name.rstrip("/")))
        cause = cause.__cause__ or cause.__context__
    for folder in dict.fromkeys((str(index_path.resolve()), str(index_path.absolute()))):
        detail = detail.replace(folder, "the index")
    return detail


def _add_error_handlers(app: FastAPI, api: APIRouter, index_path: Path) -> None:
    """Errors as {"detail": ...} JSON with the status they mean, and no server path."""

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": public_detail(exc, index_path)}, status_code=404)

    @app.exception_handler(DiskFullError)
    async def disk_full(request: Request, exc: DiskFullError) -> JSONResponse:
        # 507 Insufficient Storage (RFC 4918): the request was fine and nothing was kept;
        # the same request succeeds once there is room (a 503 says the index is unavailable).
        return JSONResponse({"detail": public_detail(exc, index_path)}, status_code=507)

    @app.exception_handler(CrossmodalError)
    async def bad_input(request: Request, exc: CrossmodalError) -> JSONResponse:
        status = 400 if isinstance(exc, BadInputError) else 503  # the index, not the request
        return JSONResponse({"detail": public_detail(exc, index_path)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:  # Starlette names only the first route's methods
            allow = ", ".join(sorted(_methods_at([*api.routes, *app.router.routes],
                                                 request.scope)))
            exc = StarletteHTTPException(
                405, f"{request.method} is not allowed here: use {allow}",
                headers={"Allow": allow})
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        )
        return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=422)


def _add_middleware(app: FastAPI, settings: ServeSettings) -> None:
    # The last added runs first: Host, CORS, token and rate, Origin, body cap, the routes.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(RequestGuardMiddleware, settings=settings,
                       limiter=RateLimiter(settings.rate_per_second, settings.rate_burst))
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(HostCheckMiddleware, settings=settings)


def _methods_at(routes: list, scope) -> set[str]:
    """Every method some route at this request's path answers."""
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return methods
