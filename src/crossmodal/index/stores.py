"""Which vector store a collection uses: chosen at creation, recorded in its manifest.

    faiss                      vectors + faiss index files in the index folder (the default)
    milvus                     Milvus Lite, embedded, in <index folder>/milvus.db
    milvus:PATH                Milvus Lite at another local path
    milvus:http://HOST:19530   a Milvus standalone or distributed server (token from
                               $CROSSMODAL_MILVUS_TOKEN)

Each backend is a StoreBackend in STORE_BACKENDS (crossmodal.registry); a third-party store
registers one under the `crossmodal.stores` entry-point group.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crossmodal.errors import BadInputError
from crossmodal.index.faiss_store import FaissStore
from crossmodal.index.protocol import VectorStore
from crossmodal.registry import Registry

LITE_DEFAULT = "milvus.db"  # relative: the index folder can move with its Lite database


@dataclass(frozen=True)
class StoreBackend:
    """How one kind of store is named, made, opened and dropped.

    parse(uri) -> the manifest's store record; new(record, folder, roles, dim, kind, params)
    -> empty stores, one per role (may fill in the record); load(record, folder, files, dim,
    kind, params, metadata) -> one committed store; drop(record, folder, roles) -> the names
    kept because another folder owns them."""

    parse: Callable[[str], dict]
    new: Callable[..., list[VectorStore]]
    load: Callable[..., VectorStore]
    drop: Callable[[dict, Path, tuple[str, ...]], list[str]]


STORE_BACKENDS: Registry[StoreBackend] = Registry("vector store", "crossmodal.stores")


def parse_store_spec(spec: str | dict | None) -> dict:
    """`faiss`, `milvus` or `milvus:URI` -> the manifest's store record (no collection yet)."""
    if isinstance(spec, dict):
        return dict(spec)
    backend, _, uri = (spec or "faiss").strip().partition(":")
    if backend not in STORE_BACKENDS:
        raise BadInputError(f"unknown store '{spec}': use faiss, milvus (Milvus Lite in the "
                            "index folder), milvus:PATH or milvus:http://HOST:19530")
    return {"backend": backend, **STORE_BACKENDS[backend].parse(uri)}


def _backend_of(record: dict) -> StoreBackend:
    name = record.get("backend", "faiss")
    if name not in STORE_BACKENDS:
        raise BadInputError(f"this index keeps its vectors in a '{name}' store, which no "
                            "installed package provides")
    return STORE_BACKENDS[name]


def new_stores(record: dict, folder: Path, roles: tuple[str, ...], dim: int, kind: str,
               params: dict | None) -> list[VectorStore]:
    """Empty stores, one per role; the backend may fill in the record (Milvus: the
    collection name)."""
    return _backend_of(record).new(record, folder, roles, dim, kind, params)


def load_store(record: dict, folder: Path, files: dict[str, str], dim: int, kind: str,
               params: dict, metadata: Callable[[], list[dict]]) -> VectorStore:
    """Open one store of a committed generation; `metadata` rebuilds faiss's row metadata."""
    return _backend_of(record).load(record, folder, files, dim, kind, params, metadata)


def drop_store(record: dict, folder: Path, roles: tuple[str, ...]) -> list[str]:
    """Drop what the store keeps outside the folder (Milvus collections; nothing for faiss);
    returns the names kept because another folder owns them (this one is a copy)."""
    return _backend_of(record).drop(record, folder, roles)


# --- faiss ------------------------------------------------------------------------------
def _faiss_parse(uri: str) -> dict:
    if uri:
        raise BadInputError(f"the faiss store takes no URI (got 'faiss:{uri}')")
    return {}


STORE_BACKENDS.register("faiss", StoreBackend(
    parse=_faiss_parse,
    new=lambda record, folder, roles, dim, kind, params: [FaissStore(dim, kind, params)
                                                          for _ in roles],
    load=lambda record, folder, files, dim, kind, params, metadata: FaissStore.load(
        folder, files, dim, kind, params, metadata),
    drop=lambda record, folder, roles: []))


# --- Milvus (Lite and server) -----------------------------------------------------------
def _milvus_parse(uri: str) -> dict:
    from crossmodal.index.milvus_store import is_remote

    if uri and not is_remote(uri):
        uri = str(Path(uri).expanduser().resolve())
    return {"uri": uri or LITE_DEFAULT}


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


def _milvus_new(record: dict, folder: Path, roles: tuple[str, ...], dim: int, kind: str,
                params: dict | None) -> list[VectorStore]:
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


def _milvus_load(record: dict, folder: Path, files: dict[str, str], dim: int, kind: str,
                 params: dict, metadata: Callable[[], list[dict]]) -> VectorStore:
    from crossmodal.index.milvus_store import MilvusStore

    return MilvusStore.load(folder, files, dim, kind, params, uri=_milvus_uri(record, folder),
                            owner=_owner(record, folder))


def _milvus_drop(record: dict, folder: Path, roles: tuple[str, ...]) -> list[str]:
    if "collection" not in record:
        return []
    from crossmodal.index.milvus_copies import drop_collections
    from crossmodal.index.milvus_store import CLIENTS, GuardedClient

    owner = _owner(record, folder)
    if owner is None:
        return []  # Milvus Lite in the folder: its database goes with the folder
    uri = _milvus_uri(record, folder)
    client = GuardedClient(CLIENTS.get(uri), uri)
    try:
        return drop_collections(client, [f"{record['collection']}_{role}" for role in roles],
                                owner)
    finally:
        CLIENTS.release(uri)


STORE_BACKENDS.register("milvus", StoreBackend(_milvus_parse, _milvus_new, _milvus_load,
                                               _milvus_drop))
