"""Where crossmodal keeps caches (CROSSMODAL_CACHE overrides; tests point it at tmp), the one
cache-key scheme, and file hashing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("CROSSMODAL_CACHE", Path.home() / ".cache" / "crossmodal"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_cache_dir() -> Path:
    """Where towers: graphs exported for ONNX Runtime on first use live (CROSSMODAL_ONNX_CACHE
    overrides; default CACHE/onnx). The test suite shares one across tests: exports are slow."""
    override = os.environ.get("CROSSMODAL_ONNX_CACHE")
    if override:
        path = Path(override)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return cache_dir("onnx")


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """Chunked, so large weight or vector files never sit whole in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_key(parts: object) -> str:
    """The one cache key: a digest of JSON-able parts (model fingerprint, data identity,
    preprocessing, precision, ...). Sorted keys, so dict order never matters; text as is
    (not \\u-escaped). A cache made under other parts is a miss, never a wrong hit."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
