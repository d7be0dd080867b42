"""Search latency of a Milvus server by consistency level, and whether a write is seen.

Starts a Milvus standalone server (PyPI `milvus`, as the tests do) unless --uri names one,
fills a flat collection with N seeded random 256-d unit vectors, then times Q single-query
searches (k=10) at each level: Strong, Bounded, Session (with and without a write just
before), Eventually. Read-your-writes: W times, one row is inserted and searched for at once
(a miss: the search did not return it first). Last, crossmodal's MilvusStore as it searches
(Session; Strong for the first search of a loaded generation).

    python benchmarks/studies/milvus_consistency.py                 # N=8,000, Q=50, W=20
    python benchmarks/studies/milvus_consistency.py --uri http://127.0.0.1:19530
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np

from _common import begin_run, write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/milvus_server.py
RESULTS = Path(__file__).resolve().parents[1] / "results"


def percentiles(times: list[float]) -> dict:
    ms = np.array(times) * 1e3
    return {"p50_ms": round(float(np.median(ms)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2)}


def measure(uri: str, n: int, queries: int, writes: int) -> dict:
    from crossmodal.index.milvus_store import MilvusStore

    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, 256)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    store = MilvusStore(256, uri=uri, collection=f"consistency_{int(time.time())}")
    client, name = store._client, store.collection
    try:
        store.add(base)
        out: dict = {"n": n, "queries": queries}
        for level in ("Strong", "Bounded", "Session", "Eventually"):
            client.search(name, data=[base[0]], limit=10, consistency_level=level)  # warm-up
            times = []
            for i in range(queries):
                start = time.perf_counter()
                client.search(name, data=[base[i]], limit=10, consistency_level=level)
                times.append(time.perf_counter() - start)
            out[level] = percentiles(times)
        for round_, level in enumerate(("Session", "Bounded", "Strong")):
            misses, times = 0, []
            for j in range(round_ * writes, (round_ + 1) * writes):  # a new vector each time
                pk = 10_000_000 + j
                client.insert(name, [{"id": pk, "vector": -base[j]}])
                start = time.perf_counter()
                hits = client.search(name, data=[-base[j]], limit=1, consistency_level=level)
                times.append(time.perf_counter() - start)
                misses += hits[0][0]["id"] != pk
            out[f"{level}_after_a_write"] = {**percentiles(times), "misses": misses,
                                             "writes": writes}
        folder = Path(tempfile.mkdtemp())
        files = store.save(folder, "images.000001")
        store.committed()
        loaded = MilvusStore.load(folder, files, 256, "flat", {}, uri=uri)
        times = []
        for i in range(queries + 1):
            start = time.perf_counter()
            loaded.search(base[i : i + 1], 10)
            times.append(time.perf_counter() - start)
        out["MilvusStore_first_search_ms"] = round(times[0] * 1e3, 2)
        out["MilvusStore_then"] = percentiles(times[1:])
        loaded.close()
        client.drop_collection(name)
        return out
    finally:
        store.close()


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=None, help="a running server (default: start one)")
    parser.add_argument("--n", type=int, default=8_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument("--out", default="milvus_consistency")
    args = parser.parse_args()
    server = None
    if args.uri is None:
        from tests.milvus_server import MilvusServer

        server = MilvusServer(Path(tempfile.mkdtemp()) / "milvus")
        server.start()
    try:
        result = measure(args.uri or server.uri, args.n, args.queries, args.writes)
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    write_result((RESULTS / f"{args.out}.json"), result, envelope)


if __name__ == "__main__":
    main()
