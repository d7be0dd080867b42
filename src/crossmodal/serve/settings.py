"""What a server allows: who may call it, how much they may send, how often."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from crossmodal.errors import BadInputError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # bearer token; required when binding a non-loopback address
    cors_origins: tuple[str, ...] = ()  # CORS stays off unless origins are named
    max_body_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_k: int = 100
    max_query_chars: int = 1000
    max_captions: int = 20
    rate_per_second: float = 20.0  # per client address; 0 turns rate limiting off
    rate_burst: int = 100
    thumbnail_size: int = 256
    allow_writes: bool = True  # adding and removing items over HTTP
    uploads_dir: str = "uploads"  # inside the index folder: where added images are kept

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise BadInputError(
                f"binding {self.host} exposes the index beyond this machine: set a bearer token "
                "with --token or the CROSSMODAL_TOKEN environment variable"
            )
        if self.token is not None and len(self.token) < 16:
            raise BadInputError("the bearer token must be at least 16 characters long")
        if not 0 < self.port < 65536:
            raise BadInputError(f"port must be 1-65535, not {self.port}")
        for name in ("max_body_bytes", "max_pixels", "max_k", "max_query_chars", "rate_burst",
                     "thumbnail_size"):
            if getattr(self, name) <= 0:
                raise BadInputError(f"{name} must be positive")
        if self.rate_per_second < 0:
            raise BadInputError("rate_per_second must be >= 0 (0: no rate limit)")
