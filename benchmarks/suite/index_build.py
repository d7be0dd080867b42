"""Index build cost at scale: build time, memory per vector, recall@10 and QPS per store/index.

Data: N seeded 256-d vectors, L2-normalised, inner product; `--data clustered` (default: points
around 10,000 random centres, as real embeddings cluster by topic) or `uniform` (uniform on
the sphere: the worst case for ANN; see benchmarks/suite/search_latency.py for those numbers).
Queries: Q fresh draws from the same distribution (not in the index).

For each index (`--kinds`, each built through the crossmodal store, as `crossmodal index`
does, in 100k-vector batches):
  build_s          wall time to add all N vectors (IVF-PQ: including training)
  index B/vec      serialized index size / N (faiss only; the .npy vectors are 1024 B/vec more)
  RSS B/vec        growth of the process's resident memory during the build / N
  recall@10        against raw faiss IndexFlatIP over the same vectors
  QPS 1 thread     all Q queries in one call, the search capped at one thread
  QPS all threads  all Q queries in one call, all threads (`nproc`)
`--stores milvus` builds the same kinds in a MilvusStore (Milvus Lite unless --milvus-uri);
Milvus Lite is an in-process Python server: give it a smaller --n (100k).

    python benchmarks/suite/index_build.py                                   # 1M clustered, faiss
    python benchmarks/suite/index_build.py --stores milvus --n 100000 --kinds flat,hnsw \
        --out index_build_milvus_100k
    python benchmarks/suite/index_build.py --n 50000 --queries 200 --out quick   # quick check
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import faiss
import numpy as np

from _common import begin_run, clustered_vectors, recall, unit_vectors, write_result  # noqa: E402
from crossmodal.index.faiss_store import FaissStore  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
START = time.perf_counter()


def log(message: str) -> None:  # progress goes to stderr, the table to stdout
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_store(store: str, kind: str, dim: int, uri: str | None, folder: Path):
    if store == "faiss":
        return FaissStore(dim, kind)
    from crossmodal.index.milvus_store import MilvusStore

    return MilvusStore(dim, kind, {}, uri=uri or str(folder / "milvus.db"),
                       collection=f"bench_{kind}")


def qps(store, queries: np.ndarray, k: int, threads: int | None) -> tuple[float, np.ndarray]:
    store.search(queries[:16], k, threads)  # warm-up
    start = time.perf_counter()
    _, positions = store.search(queries, k, threads)
    return len(queries) / (time.perf_counter() - start), positions


def measure(name: str, kind: str, args, base: np.ndarray, queries: np.ndarray,
            truth: np.ndarray, folder: Path) -> dict:
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    store = make_store(args.store_now, kind, base.shape[1], args.milvus_uri, folder)
    for lo in range(0, len(base), args.chunk):
        store.add(base[lo : lo + args.chunk])
        log(f"{name}: {min(lo + args.chunk, len(base)):,}/{len(base):,} added")
    if hasattr(store, "flush"):
        store.flush()
    build_s = time.perf_counter() - start
    rss_per_vec = (rss_bytes() - before) / len(base)
    log(f"{name}: built in {build_s:.1f}s; searching")
    qps_one, positions = qps(store, queries, args.k, 1)
    qps_all, _ = qps(store, queries, args.k, None)
    rec = recall(positions, truth)
    result = {
        "store": args.store_now, "index": kind, "params": store.params,
        "build_s": round(build_s, 2), "index_bytes_per_vec": round(store.bytes_per_vector(), 1),
        "rss_bytes_per_vec": round(rss_per_vec, 1), "recall@10": round(rec, 4),
        "qps_1_thread": round(qps_one, 1), "qps_all_threads": round(qps_all, 1),
    }
    log(f"{name}: {result}")
    if hasattr(store, "close"):
        store.close()
    del store
    gc.collect()
    return result


def print_table(rows: list[dict], threads: int) -> None:
    head = (f"{'store':<7} {'index':<6} {'build s':>8} {'index B/vec':>11} {'RSS B/vec':>10} "
            f"{'R@10':>6} {'QPS 1 thr':>10} {f'QPS {threads} thr':>10}")
    print(f"{head}\n{'-' * len(head)}")
    for r in rows:
        print(f"{r['store']:<7} {r['index']:<6} {r['build_s']:>8.1f} "
              f"{r['index_bytes_per_vec']:>11.1f} {r['rss_bytes_per_vec']:>10.1f} "
              f"{r['recall@10']:>6.3f} {r['qps_1_thread']:>10.0f} {r['qps_all_threads']:>10.0f}")


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=["uniform", "clustered"], default="clustered")
    parser.add_argument("--kinds", default="flat,hnsw,ivfpq")
    parser.add_argument("--stores", default="faiss", help="faiss and/or milvus")
    parser.add_argument("--milvus-uri", default=None, help="a server URI (default: Milvus Lite)")
    parser.add_argument("--chunk", type=int, default=100_000, help="vectors per add call")
    parser.add_argument("--out", default="index_build_1M_clustered", help="results/<out>.json")
    args = parser.parse_args()
    threads = faiss.omp_get_max_threads()
    rng = np.random.default_rng(args.seed)
    draw = clustered_vectors if args.data == "clustered" else unit_vectors
    log(f"{args.n:,} x {args.dim} {args.data} vectors, {args.queries} queries, {threads} threads, "
        f"load average {os.getloadavg()[0]:.1f}")
    both = draw(rng, args.n + args.queries, args.dim)
    base, queries = both[: args.n], np.ascontiguousarray(both[args.n :])
    del both
    log("exact ground truth")
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(base)
    truth = exact.search(queries, args.k)[1]
    del exact
    rows = []
    with tempfile.TemporaryDirectory(prefix="index_build_") as tmp:
        for store in args.stores.split(","):
            args.store_now = store
            for kind in args.kinds.split(","):
                folder = Path(tmp) / f"{store}_{kind}"
                folder.mkdir()
                rows.append(measure(f"{store} {kind}", kind, args, base, queries, truth, folder))
                shutil.rmtree(folder, ignore_errors=True)
    print(f"\nN={args.n:,} dim={args.dim} data={args.data} queries={args.queries} k={args.k} "
          f"threads={threads} load average at end {os.getloadavg()[0]:.1f}")
    print_table(rows, threads)
    RESULTS.mkdir(exist_ok=True)
    result = {"n": args.n, "dim": args.dim, "data": args.data, "queries": args.queries,
              "k": args.k, "seed": args.seed, "threads": threads, "faiss": faiss.__version__,
              "load_average_end": os.getloadavg(), "wall_s": round(time.perf_counter() - START),
              "rows": rows}
    write_result((RESULTS / f"{args.out}.json"), result, envelope)
    log(f"wrote {RESULTS / f'{args.out}.json'}")


if __name__ == "__main__":
    main()
