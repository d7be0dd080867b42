"""What every request passes before any route sees it (raw ASGI: nothing reads the body).

Outermost first: the Host check (no DNS rebinding), CORS (when origins are configured), the
bearer token and per-client rate limit, the Origin check for writes (no cross-site request
forgery) and the body cap. A request refused by one of them is answered before a byte of its
body is read, so an anonymous client cannot make the server read, parse or hold its upload.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from urllib.parse import urlsplit

from fastapi.security import HTTPBearer
from starlette.datastructures import Headers

from crossmodal.serve.settings import ServeSettings, is_ip_address

# Only for the OpenAPI schema of a server with a token: the check itself is RequestGuard's.
bearer_scheme = HTTPBearer(auto_error=False, description="The token the server was started with.")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A client still sending past the body cap has its rest read and dropped (up to this much)
# before the 413, so it sees the answer instead of a connection reset.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024


async def send_problem(send, status: int, detail: str, headers: dict[str, str] | None = None,
                       close: bool = False) -> None:
    """A JSON `{"detail": ...}` answer, as the routes give."""
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        extra.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *extra]})
    await send({"type": "http.response.body", "body": json.dumps({"detail": detail}).encode()})


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


def host_name(host_header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _origin(url: str) -> str | None:
    """`scheme://host:port` of a URL, default port spelled out; None if it has no host."""
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or parts.scheme not in _DEFAULT_PORTS:
        return None
    return f"{parts.scheme}://{parts.hostname}:{port}"


class HostCheckMiddleware:
    """Answers only to the names in `settings.host_names` (any IP when bound to all)."""

    def __init__(self, app, settings: ServeSettings):
        self.app, self.settings = app, settings

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host")
            if host is not None and not self.allows(host_name(host)):
                return await send_problem(
                    send, 400, f"unknown Host {host[:100]!r}: call the server by the address "
                               "it was started with, or allow this name with --allowed-host")
        return await self.app(scope, receive, send)

    def allows(self, name: str) -> bool:
        if name in self.settings.host_names:
            return True
        # An IP literal cannot be rebound by DNS; a wildcard bind may be reached at any.
        return self.settings.binds_every_address and is_ip_address(name)


class RequestGuardMiddleware:
    """Bearer token and rate limit on /api (but health), then the Origin check on writes."""

    def __init__(self, app, settings: ServeSettings, limiter: RateLimiter):
        self.app, self.settings, self.limiter = app, settings, limiter
        self.allowed_origins = {o for o in map(_origin, settings.cors_origins) if o}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        method, path = scope["method"], scope["path"]
        if path.startswith("/api/") and path != "/api/health" and method != "OPTIONS":
            refusal = self._token_or_rate_refusal(scope, headers)
            if refusal:
                return await send_problem(send, *refusal)
        if method not in SAFE_METHODS and not self._same_origin_or_allowed(scope, headers):
            return await send_problem(
                send, 403, f"cross-origin {method} refused: this server takes changes only "
                           "from its own page, or from an origin named with --cors-origin")
        return await self.app(scope, receive, send)

    def _token_or_rate_refusal(self, scope, headers: Headers):
        token = self.settings.token
        if token is not None:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode(), token.encode()):
                return (401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                        {"WWW-Authenticate": "Bearer"})
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait = self.limiter.retry_after(client)
        if wait > 0:
            return (429, f"too many requests from {client}: retry in {wait:.1f} s",
                    {"Retry-After": str(max(1, round(wait)))})
        return None

    def _same_origin_or_allowed(self, scope, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None:  # older browsers: what the fetch metadata says; tools send neither
            return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
        served = _origin(f"{scope.get('scheme', 'http')}://{headers.get('host', '')}")
        given = _origin(origin)  # "null" (sandboxed frames, file://) is never allowed
        return given is not None and (given == served or given in self.allowed_origins)


class BodyLimitMiddleware:
    """Refuses request bodies over `limit` bytes with 413, before any route parses them.

    The body is read (up to the limit) and replayed to the app, so a lying or absent
    Content-Length cannot get more than `limit` bytes into memory.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            # Drain only what the client is sending anyway: not past an `Expect: 100-continue`
            # (it waits for our answer) and not beyond the drain limit.
            waiting = headers.get("expect", "").lower() == "100-continue"
            drain = not waiting and int(declared) <= DRAIN_LIMIT_BYTES
            return await self._too_large(receive, send, drain)
        chunks, size = [], 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._too_large(receive, send, drain=more, already=size)
            chunks.append(body)
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed_receive():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replayed_receive, send)

    async def _too_large(self, receive, send, drain: bool, already: int = 0) -> None:
        read = already
        while drain and read <= DRAIN_LIMIT_BYTES:
            message = await receive()  # dropped at once: memory stays flat
            read += len(message.get("body", b""))
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                break
        await send_problem(send, 413, f"request body over the limit of {self.limit:,} bytes",
                           close=True)
