"""Filtered approximate search: recall@10 against exact filtered search, empty slots, latency.

Data: N seeded clustered `--dim`-d vectors (points around `--centres` random centres) with two
filters of about `--share` of the rows each: `correlated` matches whole clusters (as 'folder =
beach' picks one kind of photo), `uncorrelated` matches random rows. Queries: Q points drawn
around random centres. The exact-subset shortcut (FILTER_EXACT_ROWS / 5%: an exact scan when
few rows match) is off, as in a collection over ~400k rows where a 6.5% filter is past it.
For each index (built through FaissStore), filter and search:
  search           walk: the index's own filtered search (FaissStore filter_planner off);
                   planned: what a user gets past the shortcut (the cost rule may scan the
                   whole filter; HNSW scans queries the filter is rare near)
  plan             the whole filter's plan: scan (exact over its rows) or graph (the index)
  recall@10        against exact search over the matching rows
  empty slots      result slots with no hit, of Q x 10 (every query has >= 10 matches)
  fallbacks        queries the index search left short of 10, answered exactly instead
  rare             walked queries scanned again because the filter was rare near them
  ms/query         all Q queries searched one at a time, one thread

    python benchmarks/suite/filtered_search.py --n 30000                       # the issue's case
    python benchmarks/suite/filtered_search.py --n 1000000 --hnsw-m 16 --nlist 1024 \
        --out filtered_search_1M
    python benchmarks/suite/filtered_search.py --n 1000000 --share 0.2 --kinds hnsw --hnsw-m 16 \
        --out filtered_search_1M_20pct
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import faiss
import numpy as np

from _common import begin_run, recall, unit_vectors, write_result  # noqa: E402
from crossmodal.index.faiss_store import FaissStore
from crossmodal.index.filters import parse_filter

RESULTS = Path(__file__).resolve().parents[1] / "results"
START = time.perf_counter()


def log(message: str) -> None:  # progress goes to stderr, the table to stdout
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


def make_data(args, rng: np.random.Generator):
    middle = unit_vectors(rng, args.centres, args.dim)
    cluster = rng.integers(0, args.centres, args.n)
    base = np.empty((args.n, args.dim), np.float32)
    for lo in range(0, args.n, 100_000):
        hi = min(lo + 100_000, args.n)
        block = middle[cluster[lo:hi]] + 0.05 * rng.standard_normal((hi - lo, args.dim),
                                                                     dtype=np.float32)
        base[lo:hi] = block / np.linalg.norm(block, axis=1, keepdims=True)
    masks = {"correlated": cluster < max(1, round(args.centres * args.share)),
             "uncorrelated": rng.random(args.n) < args.share}
    queries = middle[rng.integers(0, args.centres, args.queries)] + 0.05 * rng.standard_normal(
        (args.queries, args.dim), dtype=np.float32)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    meta = [{"c": bool(c), "u": bool(u)}
            for c, u in zip(masks["correlated"], masks["uncorrelated"], strict=True)]
    return base, meta, queries, masks


def measure(store: FaissStore, base, queries, mask, where: str, k: int) -> dict:
    ids = np.flatnonzero(mask)
    truth = np.empty((len(queries), k), np.int64)
    for lo in range(0, len(queries), 50):  # exact filtered ground truth, in blocks
        sims = queries[lo : lo + 50] @ base[ids].T
        truth[lo : lo + 50] = ids[np.argsort(-sims, axis=1)[:, :k]]
    where_filter = parse_filter(where)
    store.search(queries[:5], k, 1, where_filter)  # warm-up: builds the filter's row mask
    before, rare_before = store.exact_fallbacks, store.rare_scans
    found, times = [], []
    for query in queries:
        start = time.perf_counter()
        found.append(store.search(query[None], k, 1, where_filter)[1][0])
        times.append((time.perf_counter() - start) * 1000)
    found = np.array(found)
    found_share = recall(found, truth)  # truth has k columns: the share of k found
    return {"matching_rows": int(len(ids)), "recall@10": round(found_share, 4),
            "empty_slots": int((found < 0).sum()), "slots": int(found.size),
            "fallbacks": store.exact_fallbacks - before,
            "rare_scans": store.rare_scans - rare_before,
            "ms_per_query_p50": round(float(np.median(times)), 2),
            "ms_per_query_p90": round(float(np.percentile(times, 90)), 2)}


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--centres", type=int, default=500)
    parser.add_argument("--share", type=float, default=0.065)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--kinds", default="hnsw,ivfpq")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--nlist", type=int, default=0, help="IVF lists (0: 4 x sqrt(n))")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="filtered_search_30k")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    log(f"{args.n:,} x {args.dim} clustered vectors, {args.queries} queries, "
        f"{faiss.omp_get_max_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    base, meta, queries, masks = make_data(args, rng)
    rows = []
    for kind in args.kinds.split(","):
        params = {"M": args.hnsw_m} if kind == "hnsw" else {"nlist": args.nlist}
        store = FaissStore(args.dim, kind, params, filter_exact_rows=0)  # size shortcut off
        start = time.perf_counter()
        for lo in range(0, args.n, 100_000):
            store.add(base[lo : lo + 100_000], meta[lo : lo + 100_000])
        build_s = time.perf_counter() - start
        log(f"{kind}: built in {build_s:.0f}s")
        for name, where in (("correlated", "c = true"), ("uncorrelated", "u = true")):
            for planner in (False, True):
                store.filter_planner = planner
                row = {"index": kind, "filter": name, "build_s": round(build_s, 1),
                       "search": "planned" if planner else "walk",
                       "plan": store.filter_plan(int(masks[name].sum()), args.k),
                       **measure(store, base, queries, masks[name], where, args.k)}
                log(str(row))
                rows.append(row)
        del store
    print(f"\nN={args.n:,} dim={args.dim} share={args.share} queries={args.queries} k={args.k} "
          f"load average at end {os.getloadavg()[0]:.1f}")
    head = (f"{'index':<6} {'filter':<13} {'search':<8} {'plan':<6} {'rows':>8} {'R@10':>6} "
            f"{'empty':>11} {'fallbacks':>9} {'rare':>5} {'ms p50':>7} {'ms p90':>7}")
    print(f"{head}\n{'-' * len(head)}")
    for r in rows:
        print(f"{r['index']:<6} {r['filter']:<13} {r['search']:<8} {r['plan']:<6} "
              f"{r['matching_rows']:>8,} {r['recall@10']:>6.3f} "
              f"{r['empty_slots']:>5}/{r['slots']:<5} {r['fallbacks']:>9} {r['rare_scans']:>5} "
              f"{r['ms_per_query_p50']:>7.2f} {r['ms_per_query_p90']:>7.2f}")
    RESULTS.mkdir(exist_ok=True)
    result = {**vars(args), "faiss": faiss.__version__, "load_average_end": os.getloadavg(),
              "wall_s": round(time.perf_counter() - START), "rows": rows}
    write_result((RESULTS / f"{args.out}.json"), result, envelope)
    log(f"wrote {RESULTS / f'{args.out}.json'}")


if __name__ == "__main__":
    main()
