"""Which vector store a collection uses: chosen at creation, recorded in its manifest.

    faiss                      vectors + faiss index files in the index folder (the default)
    milvus                     Milvus Lite, embedded, in <index folder>/milvus.db
    milvus:PATH                Milvus Lite at another local path
    milvus:http://HOST:19530   a Milvus standalone or distributed server (token from
                               $CROSSMODAL_MILVUS_TOKEN)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from crossmodal.errors import BadInputError
from crossmodal.index.faiss_store import FaissStore
from crossmodal.index.protocol import VectorStore

BACKENDS = ("faiss", "milvus")
LITE_DEFAULT = "milvus.db"  # relative: the index folder can move with its Lite database


def parse_store_spec(spec: str | dict | None) -> dict:
    """`faiss`, `milvus` or `milvus:URI` -> the manifest's store record (no collection yet)."""
    if isinstance(spec, dict):
        return dict(spec)
    backend, _, uri = (spec or "faiss").strip().partition(":")
    if backend not in BACKENDS:
        raise BadInputError(f"unknown store '{spec}': use faiss, milvus (Milvus Lite in the "
                            "index folder), milvus:PATH or milvus:http://HOST:19530")
    if backend == "faiss":
        if uri:
            raise BadInputError(f"the faiss store takes no URI (got '{spec}')")
        return {"backend": "faiss"}
    from crossmodal.index.milvus_store import is_remote

    if uri and not is_remote(uri):
        uri = str(Path(uri).expanduser().resolve())
    return {"backend": "milvus", "uri": uri or LITE_DEFAULT}


def _milvus_uri(record: dict, folder: Path) -> str:
    from crossmodal.index.milvus_store import is_remote

    uri = record["uri"]
    return uri if is_remote(uri) or Path(uri).is_absolute() else str(Path(folder) / uri)


def _owner(record: dict, folder: Path) -> str | None:
    """The folder's real path when its collections live outside it (a server, or Milvus Lite
    at an absolute path), so a copy of the folder can be told apart; None when the database
    is inside the folder and a copy has its own."""
    from crossmodal.index.milvus_store import is_remote

    uri = record["uri"]
    return str(Path(folder).resolve()) if is_remote(uri) or Path(uri).is_absolute() else None


def new_stores(record: dict, folder: Path, roles: tuple[str, ...], dim: int, kind: str,
               params: dict | None) -> list[VectorStore]:
    """Empty stores, one per role; fills in the record's Milvus collection name."""
    if record["backend"] == "faiss":
        return [FaissStore(dim, kind, params) for _ in roles]
    from crossmodal.index.milvus_store import MilvusStore

    record.setdefault("collection", f"crossmodal_{uuid.uuid4().hex[:12]}")
    uri = _milvus_uri(record, folder)
    stores: list[VectorStore] = []
    try:
        for role in roles:
            stores.append(MilvusStore(dim, kind, params, uri=uri, owner=_owner(record, folder),
                                      collection=f"{record['collection']}_{role}"))
    except BaseException:
        for store in stores:
            store.close()
        raise
    return stores


def load_store(record: dict, folder: Path, files: dict[str, str], dim: int, kind: str,
               params: dict, metadata: Callable[[], list[dict]]) -> VectorStore:
    """Open one store of a committed generation; `metadata` rebuilds faiss's row metadata."""
    if record.get("backend", "faiss") == "faiss":
        return FaissStore.load(folder, files, dim, kind, params, metadata)
    from crossmodal.index.milvus_store import MilvusStore

    return MilvusStore.load(folder, files, dim, kind, params, uri=_milvus_uri(record, folder),
                            owner=_owner(record, folder))


def drop_store(record: dict, folder: Path, roles: tuple[str, ...]) -> list[str]:
    """Drop the Milvus collections an index folder owns (nothing to do for faiss); returns
    the names kept because another folder owns them (this one is a copy)."""
    if record.get("backend", "faiss") == "faiss" or "collection" not in record:
        return []
    from crossmodal.index.milvus_store import drop_collections

    owner = _owner(record, folder)
    if owner is None:
        return []  # Milvus Lite in the folder: its database goes with the folder
    return drop_collections(_milvus_uri(record, folder),
                            [f"{record['collection']}_{role}" for role in roles], owner)
