"""Where a Milvus collection's state lives, and how it is read back: URIs, the two Milvus
collections of one crossmodal collection, its settings record, the read consistency.

A crossmodal collection NAME is two Milvus collections:
    NAME_items   one row per item: id (VARCHAR primary key: the item id), vector (its image),
                 the item's filter fields (crossmodal.index.metadata) as dynamic fields, and
                 `cm_item` (JSON: path, captions, sha256, bytes, mtime_ns, meta)
    NAME_texts   one row per caption: id "ITEM#K", vector, the caption's filter fields, `text`
The settings record (model id, fingerprint, dim, preprocessing, index type, format version)
is a property of NAME_items, written once when the collection is made; a process opening it
with another model or other weights is refused, as a folder index refuses.

Consistency: every read names a guarantee timestamp (Milvus's "Customized" level): the later
of "now minus STALENESS_MS" and this process's last acknowledged write. So a process always
reads its own writes, and a change acknowledged through any other process is seen within
STALENESS_MS (the query node waits if it lags further). On a 2-core machine, Milvus 2.3.5:
a search costs ~2-7 ms at this level, where Strong waits for the next time tick (~200 ms).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossmodal.collection.uri import SCHEMES, is_collection_uri
from crossmodal.errors import BadInputError, IndexMismatchError
from crossmodal.index.milvus_store import CLIENTS, TOKEN_ENV, GuardedClient

__all__ = ["SCHEMES", "is_collection_uri"]
SETTINGS_PROPERTY = "crossmodal.settings"
FORMAT = 1
STALENESS_MS = int(os.environ.get("CROSSMODAL_MILVUS_STALENESS_MS", "1000"))
ROLES = ("items", "texts")
ITEM_FIELD = "cm_item"  # the item's own record; filter fields sit beside it
MAX_ID_CHARS = 1024
_INDEX_TYPES = {
    "flat": ("FLAT", {}, {}),
    "hnsw": ("HNSW", {"M": 32, "efConstruction": 80}, {"ef": 128}),
    "ivfpq": ("IVF_PQ", {"nlist": 1024, "m": 0, "nbits": 8}, {"nprobe": 64}),
}


@dataclass(frozen=True)
class CollectionAddress:
    """Where a collection lives: the client URI pymilvus connects to, and its name."""

    target: str  # as the user wrote it
    client_uri: str  # http://HOST:PORT, or a Milvus Lite database file
    name: str

    @property
    def remote(self) -> bool:
        return self.client_uri.startswith("http")


def parse_address(target: str) -> CollectionAddress:
    """`milvus://HOST:PORT/NAME` (a Milvus server) or `milvus-lite:///PATH/FILE.db/NAME`
    (Milvus Lite, a file on this machine; PATH absolute, or relative after two slashes:
    `milvus-lite://data/photos.db/NAME`)."""
    target = str(target)
    scheme, _, rest = target.partition("://")
    where, _, name = rest.rstrip("/").rpartition("/")
    if not name.isidentifier() or not name.isascii() or not where:
        raise BadInputError(
            f"cannot read collection address {target!r}: write milvus://HOST:PORT/NAME or "
            "milvus-lite:///PATH/TO/FILE.db/NAME (NAME: letters, digits, '_')")
    if scheme == "milvus":
        host = where if ":" in where else f"{where}:19530"
        return CollectionAddress(target, f"http://{host}", name)
    return CollectionAddress(target, str(Path(where).expanduser()), name)


def hybrid_ts(unix_ms: float) -> int:
    """Milvus's hybrid timestamp (physical ms << 18) of a wall-clock time."""
    return int(unix_ms) << 18


class ReadClock:
    """The guarantee timestamp of each read (see the module's note on consistency)."""

    def __init__(self, staleness_ms: int = STALENESS_MS):
        self.staleness_ms = staleness_ms
        self._wrote_ms = 0.0

    def wrote(self) -> None:
        """Called once a write is acknowledged: later reads here include it."""
        self._wrote_ms = time.time() * 1000

    def read_kwargs(self) -> dict:
        now = time.time() * 1000
        return {"consistency_level": "Customized",
                "guarantee_timestamp": hybrid_ts(max(now - self.staleness_ms, self._wrote_ms))}


def connect(address: CollectionAddress) -> GuardedClient:
    """The shared client for the address (released with `release`)."""
    client = CLIENTS.get(address.client_uri)
    return GuardedClient(client, address.client_uri)


def release(address: CollectionAddress) -> None:
    CLIENTS.release(address.client_uri)


def collection_names(name: str) -> dict[str, str]:
    return {role: f"{name}_{role}" for role in ROLES}


def create_collections(client: Any, address: CollectionAddress, dim: int, index_type: str,
                       settings: dict) -> None:
    """Make both Milvus collections (an existing one is kept) and record the settings."""
    from pymilvus import DataType, MilvusClient

    kind, build, _ = _INDEX_TYPES[index_type]
    if kind == "IVF_PQ":
        build = {**build, "m": _pq_m(dim)}
        if not address.remote:  # Milvus Lite has no IVF-PQ: 8-bit scalar codes are closest
            kind, build = "IVF_SQ8", {"nlist": build["nlist"]}
    for role, name in collection_names(address.name).items():
        if client.has_collection(name):
            continue
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID_CHARS)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index_params = client.prepare_index_params()
        index_params.add_index("vector", index_type=kind, metric_type="IP", params=build)
        client.create_collection(name, schema=schema, index_params=index_params,
                                 consistency_level="Session")
        if role == "items":
            client.alter_collection_properties(
                name, properties={SETTINGS_PROPERTY: json.dumps(settings, sort_keys=True)})


def _pq_m(dim: int) -> int:
    return next(m for m in (64, 48, 32, 16, 8, 4, 2, 1) if dim % m == 0 and m <= dim // 2)


def read_settings(client: Any, address: CollectionAddress, wait_s: float = 10.0) -> dict | None:
    """The collection's settings record; None when there is no such collection. A collection
    made a moment ago by another process may not carry its record yet: waited for."""
    name = collection_names(address.name)["items"]
    deadline = time.monotonic() + wait_s
    while True:
        if not client.has_collection(name):
            return None
        properties = client.describe_collection(name).get("properties", {})
        if SETTINGS_PROPERTY in properties:
            return json.loads(properties[SETTINGS_PROPERTY])
        if time.monotonic() > deadline:
            raise IndexMismatchError(
                f"Milvus collection '{name}' at {address.client_uri} is not a crossmodal "
                "collection (no settings record): choose another NAME")
        time.sleep(0.2)


def search_params(index_type: str) -> dict:
    return {"metric_type": "IP", "params": dict(_INDEX_TYPES[index_type][2])}


def token_note() -> str:
    return f"(a server that needs a token reads it from ${TOKEN_ENV})"
