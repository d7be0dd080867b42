"""Where crossmodal keeps caches; override with CROSSMODAL_CACHE (tests point it at tmp)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("CROSSMODAL_CACHE", Path.home() / ".cache" / "crossmodal"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
