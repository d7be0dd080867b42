"""The /api router: the routes of `routes` (multipart and path forms) and `json_routes`
(JSON bodies: base64 images, combined queries), sharing one set of dependencies."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Security

from crossmodal.serve.budget import DecodeGate
from crossmodal.serve.duplicate_routes import duplicate_routes
from crossmodal.serve.forms import StrictFormRoute
from crossmodal.serve.json_routes import json_routes
from crossmodal.serve.live import LiveCollection
from crossmodal.serve.routes import (
    CHANGE_THREADS,
    _Deps,
    _errors,
    _item_routes,
    _like_route,
    _search_routes,
    _status_routes,
    _write_routes,
)
from crossmodal.serve.security import bearer_scheme
from crossmodal.serve.settings import ServeSettings


def build_router(live: LiveCollection, settings: ServeSettings,
                 decodes: DecodeGate) -> APIRouter:
    """The /api routes; the token, rate limit and origin are checked before them (security)."""
    codes = (400, 401, 404, 422, 429) if settings.token else (400, 404, 422, 429)
    router = APIRouter(prefix="/api", responses=_errors(*codes), route_class=StrictFormRoute)
    # Declares the bearer scheme in the schema only when the server has a token.
    guarded = [Security(bearer_scheme)] if settings.token else []
    deps = _Deps(live, settings, decodes, guarded, live.encoder.preprocessing.size,
                 anyio.CapacityLimiter(CHANGE_THREADS))
    _status_routes(router, deps)
    _search_routes(router, deps)
    _like_route(router, deps)
    _item_routes(router, deps)
    duplicate_routes(router, deps)
    if settings.allow_writes:
        _write_routes(router, deps)
    json_routes(router, deps)
    return router
