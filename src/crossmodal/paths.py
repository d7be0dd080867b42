"""Where crossmodal keeps caches (CROSSMODAL_CACHE overrides; tests point it at tmp), and
file hashing."""

from __future__ import annotations

import hashlib
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
