"""How a collection that lives in Milvus is written, told apart from an index folder's path
(imports nothing: the CLI checks its arguments with it before anything heavy loads)."""

from __future__ import annotations

from pathlib import Path

SCHEMES = ("milvus://", "milvus-lite://")


def is_collection_uri(target: str | Path) -> bool:
    """Whether `target` names a Milvus collection rather than an index folder."""
    return str(target).startswith(SCHEMES)
