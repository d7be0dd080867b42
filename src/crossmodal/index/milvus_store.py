"""A vector store in a Milvus collection (pymilvus): Milvus Lite from a local path, or a
Milvus standalone / distributed server by URI (http://host:19530).

Implements crossmodal.index.protocol.VectorStore. Milvus holds the vectors and each row's
metadata (as dynamic fields, so `where` filters run in Milvus); the index folder holds, per
generation, the primary keys in row order (`<stem>.ids.npy`) and a small state file. Keys are
handed out in increasing order and removal keeps the order, so a key's row is found by binary
search. Crash safety follows the folder's manifest: rows inserted after the last commit carry
keys >= the committed `next_pk`; searches skip them, and the next writer deletes them before
its first change (not a reader: the rows may be a live writer's). Deletes wait until the
manifest that drops their rows is written (`committed`), and are replayed if a crash cut
them short.

Filters: Milvus is asked for a superset of the matching rows (Filter.milvus_superset) and
each hit is checked with Filter.matches, so every store gives the same answer; when few hits
survive, the search asks again for more, and past Milvus's limit it lists the matching keys.

Consistency: searches are Session (this process's writes are seen: 7 ms p50 on a local
server, 200 ms right after a write), except the first one of a generation loaded from disk,
Strong (~200 ms), so a reader sees the rows another process committed before its manifest.

Copies (crossmodal.index.milvus_copies): a collection records the folder that owns it and the
generation it last committed; a writer in another folder whose owner still names the
collection is a copy, and is refused (writing would change the original too); a reader in
another folder behind that generation is a stale copy, and is refused too (its row list no
longer matches the collection). A moved folder takes the collection over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from crossmodal.errors import (
    BadInputError,
    IndexCorruptError,
    StoreUnavailableError,
    missing_dependency,
)
from crossmodal.index.faiss_store import pq_subvectors
from crossmodal.index.filters import Filter
from crossmodal.index.milvus_copies import (
    GENERATION_PROPERTY,
    OWNER_PROPERTY,
    copy_error,
    generation_of,
    stale_error,
)
from crossmodal.storage import atomic_save_json, atomic_save_npy

DEFAULT_PARAMS = {
    "flat": {},
    "hnsw": {"M": 32, "ef_construction": 80, "ef_search": 128},
    "ivfpq": {"nlist": 1024, "m": 0, "nbits": 8, "nprobe": 64},  # m 0: from dim, as faiss
}
TOKEN_ENV = "CROSSMODAL_MILVUS_TOKEN"  # credentials stay out of the manifest
_INSERT_BATCH = 2_000
_MAX_LIMIT = 16_384  # Milvus's largest search limit
_FRESH_CHECK_S = 2.0  # how often a reader of another folder's collection checks it is current
_REMOTE_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "unix:")


def is_remote(uri: str) -> bool:
    return uri.startswith(_REMOTE_SCHEMES)


class _Clients:
    """One MilvusClient per URI, shared by the stores on it; the last close releases it (and
    stops Milvus Lite's in-process server for that path, so tests leave nothing running)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, list] = {}  # uri -> [client, users]

    def get(self, uri: str) -> Any:
        with self._lock:
            if uri in self._open:
                self._open[uri][1] += 1
                return self._open[uri][0]
            client = _connect(uri)
            self._open[uri] = [client, 1]
            return client

    def release_all(self) -> None:
        """Close every client (a test's clean-up after a failure)."""
        for uri in list(self._open):
            self._open[uri][1] = 1
            self.release(uri)

    def release(self, uri: str) -> None:
        with self._lock:
            entry = self._open.get(uri)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del self._open[uri]
        with contextlib.suppress(Exception):
            entry[0].close()
        if not is_remote(uri):
            with contextlib.suppress(ImportError):
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(uri)


CLIENTS = _Clients()


def _unreachable(exc: BaseException) -> bool:
    """A connection failure (server down, wrong host), not a refused request."""
    from pymilvus.exceptions import ConnectError, MilvusException, MilvusUnavailableException

    if isinstance(exc, ConnectError | MilvusUnavailableException):
        return True
    if isinstance(exc, MilvusException):
        return exc.code == 2  # pymilvus's Status.CONNECT_FAILED
    with contextlib.suppress(ImportError):
        import grpc

        if isinstance(exc, grpc.RpcError):
            return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return False


def unavailable(uri: str, exc: BaseException) -> StoreUnavailableError:
    reason = getattr(exc, "message", None) or str(exc)
    return StoreUnavailableError(
        f"cannot reach Milvus at {uri} ({reason.splitlines()[0][:200]}): start the server "
        f"or check the URI (and {TOKEN_ENV} for a server that needs a token), then retry")


class GuardedClient:
    """A MilvusClient whose connection failures raise StoreUnavailableError (HTTP 503, one CLI
    line) instead of pymilvus's own exceptions."""

    def __init__(self, client: Any, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if _unreachable(exc):
                    raise unavailable(self._uri, exc) from exc
                raise
        return call


def _connect(uri: str) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise missing_dependency("pymilvus", "milvus") from None
    # Failures reach the caller as exceptions (one line in the CLI); pymilvus would also log
    # each with a traceback first.
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    if not is_remote(uri):
        try:
            import milvus_lite  # noqa: F401
        except ImportError:
            raise missing_dependency("milvus-lite", "milvus") from None
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""))
    except Exception as exc:  # pymilvus raises its own MilvusException, grpc errors, OSError
        if is_remote(uri):
            raise unavailable(uri, exc) from exc
        raise BadInputError(f"cannot start Milvus Lite at {uri}: {exc}. Check the path") from exc


class MilvusStore:
    def __init__(self, dim: int, kind: str = "flat", params: dict | None = None, *,
                 uri: str, collection: str, ids: np.ndarray | None = None, next_pk: int = 0,
                 pending: list[int] | None = None, create: bool = True,
                 owner: str | None = None, generation: int | None = None):
        if kind not in DEFAULT_PARAMS:
            raise BadInputError(f"unknown index type '{kind}' (known: "
                                f"{', '.join(DEFAULT_PARAMS)})")
        self.dim, self.kind, self.uri, self.collection = dim, kind, uri, collection
        self.params = {**DEFAULT_PARAMS[kind], **(params or {})}
        if kind == "ivfpq" and not self.params["m"]:
            self.params["m"] = pq_subvectors(dim)
        self._pks = np.zeros(0, np.int64) if ids is None else np.asarray(ids, np.int64)
        self._next_pk = int(next_pk)
        self._pending = list(pending or [])  # keys removed, deleted in Milvus once committed
        self._stale_checked = ids is None  # a loaded store may hold a crashed writer's rows
        self._strong_next = ids is not None  # a loaded generation may be another process's
        self.owner = owner  # the index folder's real path; None: the collection is its own
        self._owner_checked = False
        self._generation = generation  # the folder's, as loaded or last saved
        self._publish = False  # a saved generation to record in the collection once committed
        self._fresh_at = -_FRESH_CHECK_S
        self._closed = True
        self._client = GuardedClient(CLIENTS.get(uri), uri)
        self._closed = False
        try:
            if self._client.has_collection(collection):
                self._client.load_collection(collection)
            elif create:
                self._create()
            else:
                raise IndexCorruptError(f"Milvus at {uri} has no collection '{collection}' "
                                        "that this index names: was it dropped?")
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        index_params = self._client.prepare_index_params()
        kind, p = self.kind, self.params
        index_type, build = {
            "flat": ("FLAT", {}),
            "hnsw": ("HNSW", {"M": int(p.get("M", 32)),
                              "efConstruction": int(p.get("ef_construction", 80))}),
            "ivfpq": ("IVF_PQ", {"nlist": int(p.get("nlist", 1024)), "m": int(p.get("m", 0)),
                                 "nbits": int(p.get("nbits", 8))}),
        }[kind]
        if index_type == "IVF_PQ" and not is_remote(self.uri):
            # Milvus Lite has no IVF-PQ yet; IVF with 8-bit scalar codes is its closest kind.
            index_type, build = "IVF_SQ8", {"nlist": build["nlist"]}
        self.params["milvus_index_type"] = index_type
        index_params.add_index("vector", index_type=index_type, metric_type="IP", params=build)
        self._client.create_collection(self.collection, schema=schema,
                                       index_params=index_params, consistency_level="Session")
        if self.owner is not None:
            self._client.alter_collection_properties(self.collection,
                                                     properties={OWNER_PROPERTY: self.owner})
        self._owner_checked = True

    def _check_owner(self) -> None:
        """Refuse to write to a copy of another index folder that shares this collection."""
        if self._owner_checked or self.owner is None:
            return
        properties = self._properties()
        error = copy_error(self.owner, properties, self.collection, self.uri)
        if error is not None:
            raise error
        recorded = properties.get(OWNER_PROPERTY)
        if recorded != self.owner:  # new, or the folder moved: it owns the collection now
            self._client.alter_collection_properties(self.collection,
                                                     properties={OWNER_PROPERTY: self.owner})
        self._owner_checked = True

    def _properties(self) -> dict:
        return self._client.describe_collection(self.collection).get("properties", {})

    def _check_current(self, now: bool = False) -> None:
        """Refuse to read a collection another folder has committed to since this folder's
        generation (a stale `cp -r` copy); checked on load, then every _FRESH_CHECK_S."""
        if self.owner is None or self._generation is None or self._publish:
            return
        if not now and time.monotonic() - self._fresh_at < _FRESH_CHECK_S:
            return
        self._fresh_at = time.monotonic()
        error = stale_error(self.owner, self._generation, self._properties(), self.collection,
                            self.uri)
        if error is not None:
            raise error

    def _search_params(self) -> dict:
        if self.kind == "hnsw":
            return {"metric_type": "IP", "params": {"ef": int(self.params["ef_search"])}}
        if self.kind == "ivfpq":
            return {"metric_type": "IP", "params": {"nprobe": int(self.params["nprobe"])}}
        return {"metric_type": "IP", "params": {}}

    def __len__(self) -> int:
        return len(self._pks)

    # --- changing -----------------------------------------------------------------------
    def _before_write(self) -> None:
        """The engine writes only under its folder lock: rows past the committed keys are
        left by a writer that crashed, and unfinished deletes are replayed."""
        self._check_owner()
        if not self._stale_checked:
            self._stale_checked = True
            # Listed with a Strong query, then deleted by key: a server deleting by a filter
            # matches it with the collection's (Session) view, which misses other clients' rows.
            while stray := self._client.query(
                    self.collection, filter=f"id >= {self._next_pk}", output_fields=["id"],
                    limit=_MAX_LIMIT, consistency_level="Strong"):
                self._client.delete(self.collection, ids=[int(row["id"]) for row in stray])
            self.committed()

    def add(self, vectors: np.ndarray, metadata: list[dict] | None = None) -> None:
        self._before_write()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise BadInputError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        if metadata is not None and len(metadata) != len(vectors):
            raise BadInputError(f"{len(metadata)} metadata rows for {len(vectors)} vectors")
        pks = np.arange(self._next_pk, self._next_pk + len(vectors), dtype=np.int64)
        for start in range(0, len(vectors), _INSERT_BATCH):
            stop = start + _INSERT_BATCH
            rows = [{**(metadata[i] if metadata else {}), "id": int(pks[i]),
                     "vector": vectors[i]} for i in range(start, min(stop, len(vectors)))]
            self._client.insert(self.collection, rows)
        self._next_pk += len(vectors)
        self._pks = np.concatenate([self._pks, pks])

    def remove(self, positions: np.ndarray) -> None:
        self._before_write()
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        self._pending.extend(int(pk) for pk in self._pks[positions])
        self._pks = np.delete(self._pks, positions)

    def committed(self) -> None:
        self._stale_checked = True  # called by the writer: the caller holds the lock
        if self._publish and self.owner is not None:  # before the deletes copies cannot see
            self._client.alter_collection_properties(
                self.collection, properties={GENERATION_PROPERTY: str(self._generation)})
        self._publish = False
        for start in range(0, len(self._pending), 10_000):
            self._client.delete(self.collection, ids=self._pending[start : start + 10_000])
        self._pending = []

    def flush(self, wait_s: float = 3600) -> None:
        """Seal what was inserted and wait until the index covers it (a benchmark's build
        time: until then Milvus searches the unindexed rows exhaustively)."""
        self._client.flush(self.collection)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            state = self._client.describe_index(self.collection, "vector")
            if not state.get("pending_index_rows", 0) and state.get("indexed_rows", 0) >= len(
                    self) or self.kind == "flat":
                return
            time.sleep(0.5)

    # --- reading ------------------------------------------------------------------------
    def _positions(self, pks: np.ndarray) -> np.ndarray:
        """Row of each key; -1 for keys not (or no longer) in this store."""
        at = np.searchsorted(self._pks, pks)
        inside = at < len(self._pks)
        found = inside & (self._pks[np.where(inside, at, 0)] == pks)
        return np.where(found, at, -1)

    def search(self, queries: np.ndarray, k: int, threads: int | None = None,
               where: Filter | None = None) -> tuple[np.ndarray, np.ndarray]:
        self._check_current()
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(int(k), len(self))
        scores = np.full((len(queries), max(k, 0)), -np.inf, np.float32)
        positions = np.full((len(queries), max(k, 0)), -1, np.int64)
        if k <= 0:
            return scores, positions
        expression = where.milvus_superset() if where is not None else ""
        # Rows removed but not yet deleted, left by a crashed (or a running) writer, or not
        # matching `where` may take places: ask for more while Milvus fills every place.
        fetch = min(k + len(self._pending), _MAX_LIMIT)
        while True:
            kept, full = self._search_once(queries, fetch, expression, where)
            short = any(len(found) < k for found, _ in kept)
            if not (short and full) or fetch >= _MAX_LIMIT:
                break
            fetch = min(fetch * 4, _MAX_LIMIT)
        if short and full and where is not None:  # past the limit: name the rows outright
            keys = self._matching_keys(expression, where)
            kept = self._search_once(queries, k, f"id in {keys}", None)[0] if keys else []
        for row, (found, dist) in enumerate(kept):
            take = min(k, len(found))
            positions[row, :take] = found[:take]
            scores[row, :take] = dist[:take]
        return scores, positions

    def _search_once(self, queries: np.ndarray, limit: int, expression: str,
                     where: Filter | None) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
        """Per query, the committed rows among the hits that match `where` (positions and
        scores), and whether any query got all `limit` hits (so more may be there)."""
        fields = sorted(where.fields()) if where is not None else []
        results = self._client.search(
            self.collection, data=list(queries), limit=limit, filter=expression,
            search_params=self._search_params(), output_fields=["id", *fields],
            consistency_level=self._read_level())
        kept = []
        for hits in results:
            found = self._positions(np.array([hit["id"] for hit in hits], np.int64))
            keep = found >= 0
            if where is not None:
                keep &= np.array([where.matches(hit.get("entity", {})) for hit in hits], bool)
            dist = np.array([hit["distance"] for hit in hits], np.float32)
            kept.append((found[keep], dist[keep]))
        return kept, any(len(hits) == limit for hits in results)

    def _read_level(self) -> str:
        """Always named: a server given no level read stale rows in a test (pymilvus 3.0.2,
        Milvus 2.3.5) where an explicit Session read them right."""
        level = "Strong" if self._strong_next else "Session"
        self._strong_next = False
        return level

    def _matching_keys(self, expression: str, where: Filter) -> list[int]:
        """Keys of the committed rows matching `where`, read through a query iterator."""
        rows = self._client.query_iterator(
            self.collection, batch_size=4_096, filter=expression or "id >= 0",
            output_fields=["id", *sorted(where.fields())], consistency_level=self._read_level())
        keys: list[int] = []
        try:
            while batch := rows.next():
                keys.extend(int(row["id"]) for row in batch if where.matches(row))
        finally:
            rows.close()
        committed = self._positions(np.array(keys, np.int64)) >= 0
        return [key for key, ok in zip(keys, committed, strict=True) if ok]

    def get_vectors(self, positions: np.ndarray) -> np.ndarray:
        pks = self._pks[np.asarray(positions, dtype=np.int64)]
        rows = self._client.get(self.collection, ids=[int(pk) for pk in pks],
                                output_fields=["vector"], consistency_level=self._read_level())
        by_pk = {int(row["id"]): row["vector"] for row in rows}
        missing = [int(pk) for pk in pks if int(pk) not in by_pk]
        if missing:
            self._check_current(now=True)  # a stale copy says so
            raise IndexCorruptError(
                f"Milvus collection '{self.collection}' lacks rows {missing[:5]}")
        return np.array([by_pk[int(pk)] for pk in pks], np.float32).reshape(len(pks), self.dim)

    def bytes_per_vector(self) -> float:
        """Disk the Milvus Lite folder takes per vector (0: unknown, for a server)."""
        if is_remote(self.uri) or not len(self) or not Path(self.uri).exists():
            return 0.0
        root = Path(self.uri)
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files) / len(self)

    # --- persistence --------------------------------------------------------------------
    def save(self, folder: Path, stem: str) -> dict[str, str]:
        files = {"ids": f"{stem}.ids.npy", "milvus": f"{stem}.milvus.json"}
        self._generation, self._publish = generation_of(stem), True
        atomic_save_npy(Path(folder) / files["ids"], self._pks)
        atomic_save_json(Path(folder) / files["milvus"], {
            "collection": self.collection, "next_pk": self._next_pk, "pending": self._pending,
            "generation": self._generation})
        return files

    @classmethod
    def load(cls, folder: Path, files: dict[str, str], dim: int, kind: str, params: dict, *,
             uri: str, owner: str | None = None) -> MilvusStore:
        folder = Path(folder)
        try:
            ids = np.load(folder / files["ids"])
            state = json.loads((folder / files["milvus"]).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorruptError(f"cannot read the Milvus row list in {folder}: {exc}") from exc
        store = cls(dim, kind, params, uri=uri, collection=state["collection"], ids=ids,
                    next_pk=state["next_pk"], pending=state["pending"], create=False,
                    owner=owner, generation=state.get("generation"))
        try:
            store._check_current(now=True)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            CLIENTS.release(self.uri)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

