"""A collection that lives in Milvus (milvus://HOST:PORT/NAME): insert rate, search latency
with and without a filter, from one and from two application processes, memory per item.

Data: N seeded random unit `--dim`-d vectors, one item each (no captions), each with a
`bucket` field (0-9) so `bucket = 3` matches 10% of the items. Items are written through
MilvusCollection.add_vectors in batches of `--batch` (what `crossmodal index` and uploads
do, after embedding), then the server flushes and builds its index (`--index-type`).
Searches: Q random queries, k=10, through MilvusCollection.search_vectors at the collection's
read level (bounded staleness: see crossmodal.collection.milvus_schema); the query vectors
are given, so this is the collection's cost without the model's (add the text encoder's
~5-45 ms for a text query). "two processes": two processes search at once, each Q queries;
p50/p99 are over both, qps is both together. Memory: the resident memory of the Milvus
server's processes (/proc, those whose command line names milvus) before and after, per item.

    python benchmarks/suite/milvus_collection.py                       # N=20000, own server
    python benchmarks/suite/milvus_collection.py --n 1000000 --out milvus_collection_1M
    python benchmarks/suite/milvus_collection.py --uri milvus://127.0.0.1:19530   # a server
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.milvus_server

import numpy as np

from _common import begin_run, unit_vectors, write_result  # noqa: E402
from crossmodal.collection.milvus_collection import MilvusCollection
from crossmodal.models.protocol import ImagePreprocessing

RESULTS = Path(__file__).resolve().parents[1] / "results"
START = time.perf_counter()


def log(message: str) -> None:  # progress goes to stderr, the table to stdout
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


class SyntheticModel:
    """What a collection records of its model; the vectors are given, never encoded."""

    def __init__(self, dim: int):
        self.model_id, self.dim, self.fingerprint = f"synthetic:{dim}", dim, "synthetic"
        self.preprocessing = ImagePreprocessing(size=8, mean=(0.0,) * 3, std=(1.0,) * 3)


def milvus_rss(group: int | None) -> int:
    """Resident bytes of the server: the processes of its process group when this script
    started it, else every process whose command line names milvus."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if group is not None and os.getpgid(int(pid)) != group:
                continue
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if group is None and (b"milvus" not in command or b"benchmarks" in command):
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ProcessLookupError):
            continue
    return total


def insert(collection: MilvusCollection, args, rng: np.random.Generator) -> dict:
    started, done = time.perf_counter(), 0
    while done < args.n:
        count = min(args.batch, args.n - done)
        items = [{"id": f"photos/{done + i:08d}.jpg", "path": f"/photos/{done + i:08d}.jpg",
                  "meta": {"bucket": (done + i) % 10}} for i in range(count)]
        collection.add_vectors(items, unit_vectors(rng, count, args.dim))
        done += count
        if done % (args.batch * 20) == 0 or done == args.n:
            log(f"inserted {done:,} ({done / (time.perf_counter() - started):,.0f}/s)")
    inserted_s = time.perf_counter() - started
    client, name = collection._client, collection.names["items"]
    client.flush(name)
    while True:  # until the index covers every row (else Milvus scans the rest)
        state = client.describe_index(name, "vector")
        if not state.get("pending_index_rows", 0) and state.get("indexed_rows", 0) >= args.n:
            break
        time.sleep(1)
    return {"insert_s": inserted_s, "items_per_s": args.n / inserted_s,
            "flush_and_index_s": time.perf_counter() - started - inserted_s}


def latencies(target: str, dim: int, queries: int, where: str | None, seed: int) -> list[float]:
    collection = MilvusCollection.open(target, encoder=SyntheticModel(dim))
    vectors = unit_vectors(np.random.default_rng(seed), queries + 5, dim)
    for vector in vectors[:5]:  # warm up: connection, first calls
        collection.search_vectors(vector, 10, where=where)
    times = []
    for vector in vectors[5:]:
        began = time.perf_counter()
        hits = collection.search_vectors(vector, 10, where=where)[0]
        times.append(time.perf_counter() - began)
        assert len(hits) == 10, "a search came back short"
    collection.close()
    return times


def _worker(args_tuple) -> list[float]:  # noqa: ANN001 - a pool's argument
    return latencies(*args_tuple)


def search_rows(target: str, args) -> list[dict]:
    rows = []
    for where in (None, "bucket = 3"):
        for processes in (1, 2):
            began = time.perf_counter()
            if processes == 1:
                times = latencies(target, args.dim, args.queries, where, 1)
            else:
                with multiprocessing.get_context("spawn").Pool(processes) as pool:
                    parts = pool.map(_worker, [(target, args.dim, args.queries, where, 10 + p)
                                               for p in range(processes)])
                times = [t for part in parts for t in part]
            wall = time.perf_counter() - began
            ms = np.array(times) * 1000
            rows.append({"filter": where or "-", "processes": processes,
                         "p50_ms": float(np.percentile(ms, 50)),
                         "p99_ms": float(np.percentile(ms, 99)),
                         "qps": len(times) / float(np.sum(times)) * processes,
                         "wall_s": wall})
            log(f"search filter={where} processes={processes}: p50 {rows[-1]['p50_ms']:.1f} ms")
    return rows


def run(target: str, args, group: int | None) -> dict:
    model = SyntheticModel(args.dim)
    collection = MilvusCollection.create(target, model=model.model_id, encoder=model,
                                         index_type=args.index_type)
    version = collection._client.get_server_version()
    rss_before = milvus_rss(group)
    try:
        inserted = insert(collection, args, np.random.default_rng(0))
        rss_after = milvus_rss(group)
        searched = search_rows(target, args)
    finally:
        collection.close()
        if not args.keep:
            MilvusCollection.drop(target)
    return {"n": args.n, "dim": args.dim, "index_type": args.index_type,
            "milvus_version": version, "queries": args.queries, **inserted,
            "milvus_rss_before_mb": rss_before / 1e6, "milvus_rss_after_mb": rss_after / 1e6,
            "bytes_per_item": (rss_after - rss_before) / args.n,
            "memory_of": "the server's process group" if group else "processes named milvus",
            "search": searched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--index-type", choices=["flat", "hnsw", "ivfpq"], default="hnsw")
    parser.add_argument("--uri", default=None,
                        help="milvus://HOST:PORT of a running server (default: start one)")
    parser.add_argument("--keep", action="store_true", help="Keep the collection.")
    parser.add_argument("--out", default="milvus_collection")
    args = parser.parse_args()
    envelope = begin_run()
    server = None
    if args.uri is None:
        from tests.milvus_server import MilvusServer

        server = MilvusServer(Path(tempfile.mkdtemp(prefix="milvus-bench-")))
        log("starting a Milvus server (PyPI milvus) ...")
        server.start(timeout_s=600)
        args.uri = server.uri.replace("http://", "milvus://")
    try:
        result = run(f"{args.uri.rstrip('/')}/bench_{args.n}", args,
                     server.process.pid if server else None)
    finally:
        if server is not None:
            server.stop()
    print(f"Milvus {result['milvus_version']}, {args.n:,} items, {args.dim}-d, "
          f"{args.index_type}: insert {result['items_per_s']:,.0f} items/s, flush+index "
          f"{result['flush_and_index_s']:.1f} s, server memory "
          f"{result['bytes_per_item']:,.0f} B/item")
    print(f"{'filter':<12} {'processes':>9} {'p50 ms':>8} {'p99 ms':>8} {'qps':>7}")
    for row in result["search"]:
        print(f"{row['filter']:<12} {row['processes']:>9} {row['p50_ms']:>8.1f} "
              f"{row['p99_ms']:>8.1f} {row['qps']:>7.0f}")
    path = write_result(RESULTS / f"{args.out}.json", result, envelope)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
