"""Bearer token, per-client rate limit and request body cap."""

from __future__ import annotations

import hmac
import json
import threading
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crossmodal.serve.settings import ServeSettings

_bearer = HTTPBearer(auto_error=False, description="Required when the server has a token.")


class RateLimiter:
    """A token bucket per client address: `burst` requests at once, `rate` per second after."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000):
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """0 if the request may go ahead (and is counted), else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= self.max_clients:  # forget idle clients, bound memory
                self._buckets = {c: v for c, v in self._buckets.items() if now - v[1] < 60}
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens - 1.0, now)
            return 0.0


def make_guard(settings: ServeSettings, limiter: RateLimiter):
    """A dependency every API route runs: token check first, then the rate limit."""
    def guard(request: Request, credentials: Annotated[
            HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if settings.token is not None:
            given = credentials.credentials if credentials else ""
            if not hmac.compare_digest(given.encode(), settings.token.encode()):
                raise HTTPException(401, "missing or wrong bearer token: send "
                                         "'Authorization: Bearer <token>'",
                                    headers={"WWW-Authenticate": "Bearer"})
        client = request.client.host if request.client else "unknown"
        wait = limiter.retry_after(client)
        if wait > 0:
            raise HTTPException(429, f"too many requests from {client}: retry in {wait:.1f} s",
                                headers={"Retry-After": str(max(1, round(wait)))})

    return guard


class BodyLimitMiddleware:
    """Refuses request bodies over `limit` bytes with 413, before any route parses them.

    The body is read (up to the limit) and replayed to the app, so a lying or absent
    Content-Length cannot get more than `limit` bytes into memory.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                return await self._too_large(send)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed_receive():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replayed_receive, send)

    async def _too_large(self, send) -> None:
        body = json.dumps({"detail": f"request body over the limit of {self.limit:,} bytes"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body.encode()})
