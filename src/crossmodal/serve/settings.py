"""What a server allows: who may call it, how much they may send, how often."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from crossmodal.errors import BadInputError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
    full_size: int = 2048  # the longest side of an item's image when opened full size
    allow_writes: bool = True  # adding and removing items over HTTP
    uploads_dir: str = "uploads"  # inside the index folder: where added images are kept
    ocr: bool = False  # read the text in each uploaded photo (crossmodal.data.ocr)
    allowed_hosts: tuple[str, ...] = ()  # Host names answered besides the bound address
    trusted_proxies: tuple[str, ...] = ()  # X-Forwarded-* is believed only from these
    max_parallel_decodes: int = field(default_factory=_cores)  # full-size image decodes
    # Memory all decodes at once may hold (each reserves what its header says it needs:
    # up to 5 bytes a pixel, 200 MB for a 40 MP image); one bigger than this runs alone.
    max_decode_bytes: int = 1 << 30

    @property
    def host_names(self) -> frozenset[str]:
        """Host header names this server answers to (DNS rebinding needs any other name)."""
        names = {self.host, "localhost", "127.0.0.1", "::1", *self.allowed_hosts}
        return frozenset(n.lower().strip("[]").rstrip(".") for n in names)

    @property
    def binds_every_address(self) -> bool:
        """Bound to 0.0.0.0 or '::': any of the machine's addresses may be the Host."""
        return self.host in ("0.0.0.0", "::", "")

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
                     "thumbnail_size", "full_size", "max_parallel_decodes",
                     "max_decode_bytes"):
            if getattr(self, name) <= 0:
                raise BadInputError(f"{name} must be positive")
        for proxy in self.trusted_proxies:
            if proxy != "*" and not _is_network(proxy):
                raise BadInputError(f"trusted proxy {proxy!r} is not an IP address or network "
                                    "(e.g. 127.0.0.1 or 10.0.0.0/8)")
        if self.rate_per_second < 0:
            raise BadInputError("rate_per_second must be >= 0 (0: no rate limit)")
