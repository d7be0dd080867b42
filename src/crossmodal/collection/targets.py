"""One way in for the CLI, the server and MCP: a target is an index folder (a path) or a
collection that lives in Milvus (milvus://HOST:PORT/NAME, milvus-lite:///PATH/FILE.db/NAME);
`collection_class` picks the class whose open/create/exists/model_of/inspect/drop serve it.
"""

from __future__ import annotations

from pathlib import Path

from crossmodal.collection.uri import SCHEMES, is_collection_uri

__all__ = ["SCHEMES", "collection_class", "is_collection_uri", "open_collection"]


def collection_class(target: str | Path) -> type:
    """Collection (a folder) or MilvusCollection (a URI), by how `target` is written."""
    if is_collection_uri(target):
        from crossmodal.collection.milvus_collection import MilvusCollection

        return MilvusCollection
    from crossmodal.collection.collection import Collection

    return Collection


def open_collection(target: str | Path, model: str | None = None, encoder=None):  # noqa: ANN001, ANN201 - an Encoder; Collection or MilvusCollection
    """The collection at `target`, folder or Milvus; another model than its own is refused."""
    cls = collection_class(target)
    return cls.open(target if is_collection_uri(target) else Path(target), model=model,
                    encoder=encoder)
