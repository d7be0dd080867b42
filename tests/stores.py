"""Build any vector store the same way, so one test suite runs against faiss, Milvus Lite and
a real Milvus server (tests/milvus_server.py)."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest

from crossmodal.index.faiss_store import FaissStore
from crossmodal.index.stores import STORE_BACKENDS

# How the suite runs each registered store: its setups (a store may run several ways). A
# store registered without setups here fails test_every_registered_store_runs_the_suite.
SETUPS = {"faiss": ("faiss",), "milvus": ("milvus-lite", "milvus-server")}
BACKENDS = tuple(setup for name in STORE_BACKENDS if name in SETUPS for setup in SETUPS[name])
_names = itertools.count()
_RUN = uuid.uuid4().hex[:6]  # the server outlives a module: names unique per session


def milvus_lite_or_skip(path: Path) -> str:
    """A Milvus Lite URI that has started, or a clean skip saying why not."""
    pytest.importorskip("pymilvus", reason="pymilvus not installed (pip install '.[milvus]')")
    pytest.importorskip("milvus_lite", reason="milvus-lite not installed")
    from crossmodal.index.milvus_store import CLIENTS

    uri = str(path)
    try:
        CLIENTS.get(uri)  # held until release_lite: one server for the whole module
    except Exception as exc:  # noqa: BLE001 - any failure to start means: skip, say why
        pytest.skip(f"Milvus Lite cannot start here: {exc}")
    return uri


def release_lite(uri: str) -> None:
    from crossmodal.index.milvus_store import CLIENTS

    CLIENTS.release(uri)


class StoreMaker:
    """new(dim, kind, params) and reload(store, folder, files) for one backend."""

    def __init__(self, backend: str, uri: str | None):
        self.backend, self.uri = backend, uri
        self.made: list = []

    def new(self, dim: int, kind: str = "flat", params: dict | None = None):
        if self.backend == "faiss":
            store = FaissStore(dim, kind, params)
        else:
            from crossmodal.index.milvus_store import MilvusStore

            store = MilvusStore(dim, kind, params, uri=self.uri,
                                collection=f"t{_RUN}_{next(_names)}")
        self.made.append(store)
        return store

    def reload(self, store, folder: Path, files: dict[str, str], metadata=None):
        if self.backend == "faiss":
            loaded = FaissStore.load(folder, files, store.dim, store.kind, store.params,
                                     metadata)
        else:
            from crossmodal.index.milvus_store import MilvusStore

            loaded = MilvusStore.load(folder, files, store.dim, store.kind, store.params,
                                      uri=self.uri)
        self.made.append(loaded)
        return loaded

    def close(self) -> None:
        for store in self.made:
            store.close()
