"""End-to-end text query latency: encode with the real encoder + search + metadata -> Hits.

Index: `Collection.create(tmp, model="towers:lite-en")` (flat by default) and one `add_vectors`
of N synthetic items (id "img_000123", path "img_000123.jpg", one generated caption each) with
random L2-normalised vectors of the encoder's dim; the encoder is not used to build it.
Queries: Q distinct English queries generated from word lists, each run (after a warm-up) as
`collection.search_text(q, k=10)` -> list[Hit]: p50/p90/p99/mean ms, goal p50 <= 15 ms (issue 14).
Separately, per query: encode-only (`encoder.encode_texts([q])`), search-only (the store's
faiss search of that vector) and search+hits (`collection.search_vectors`) medians.
Waits (polling) for a towers model's head weights to exist before loading it.

    python benchmarks/query_latency.py                       # full: N=100,000, 200 queries
    python benchmarks/query_latency.py --n 20000 --queries 50   # quick check
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import RESULTS, begin_run, write_result  # noqa: E402
from crossmodal.engine import Collection
from crossmodal.models.speed import cpu_description

SUBJECTS = ["a dog", "two dogs", "a black dog", "a little girl", "a young boy", "a man",
            "a woman", "two children", "a group of people", "a brown horse", "a cat",
            "a cyclist", "a surfer", "a skateboarder", "an old man", "a football player",
            "a crowd", "a family", "a white bird", "a rock climber", "a girl in a red dress"]
ACTIONS = ["running", "jumping", "sitting", "playing", "walking", "swimming", "riding a bike",
           "climbing a rock", "catching a ball", "standing", "lying down", "dancing", "eating",
           "reading a book", "looking at the camera", "holding an umbrella", "throwing a frisbee"]
PLACES = ["on the beach", "in the snow", "in a park", "on a city street", "in the water",
          "on the grass", "in front of a building", "on a mountain", "at a market",
          "near a lake", "in a field", "on a wooden bridge", "in the forest", "on a boat"]
EXTRAS = ["", "", "", " at sunset", " in the rain", " at night", " during a game",
          " with a ball", " next to a car"]
KEYWORDS = ["dog", "beach", "snow", "bike", "surfing", "sunset", "children", "horse", "red",
            "street", "mountain", "water", "ball", "crowd", "park", "night", "boat", "bird"]


def phrase(rng: np.random.Generator) -> str:
    if rng.random() < 0.25:  # short keyword queries, as people type them
        return " ".join(rng.choice(KEYWORDS, size=int(rng.integers(2, 4)), replace=False))
    words = [rng.choice(SUBJECTS), rng.choice(ACTIONS), rng.choice(PLACES)]
    return " ".join(words) + rng.choice(EXTRAS)


def make_queries(rng: np.random.Generator, count: int) -> list[str]:
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen[phrase(rng)] = None
    return list(seen)


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def wait_for_weights(model: str, timeout_s: float, poll_s: float = 30.0) -> None:
    """Another process may still be writing a towers model's head weights: wait for them."""
    if not model.startswith("towers:"):
        return
    from crossmodal.models.towers import find_tower_config

    path = find_tower_config(model.split(":", 1)[1]).weights_path
    deadline = time.monotonic() + timeout_s
    while path is not None:
        # present and not written to in the last poll interval: complete
        if path.is_file() and time.time() - path.stat().st_mtime >= min(poll_s, 10.0):
            return
        if time.monotonic() > deadline:
            sys.exit(f"gave up after {timeout_s:.0f} s waiting for {path}")
        print(f"waiting for {path} ...", file=sys.stderr, flush=True)
        time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))


def timed(fn, inputs) -> np.ndarray:
    ms = np.empty(len(inputs))
    for i, item in enumerate(inputs):
        start = time.perf_counter()
        fn(item)
        ms[i] = (time.perf_counter() - start) * 1e3
    return ms


def summary(ms: np.ndarray) -> dict:
    return {"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-type", default="flat", choices=["flat", "hnsw", "ivfpq"])
    parser.add_argument("--faiss-threads", type=int, default=0,
                        help="faiss OpenMP threads (0: leave faiss's default, all cores)")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch intra-op threads (0: leave torch's default)")
    parser.add_argument("--goal-ms", type=float, default=15.0)  # issue 14
    parser.add_argument("--wait", type=float, default=900, help="max s to wait for weights")
    parser.add_argument("--out", default="query_latency", help="results/<out>.json")
    args = parser.parse_args()

    if args.faiss_threads:
        import faiss

        faiss.omp_set_num_threads(args.faiss_threads)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    wait_for_weights(args.model, args.wait)
    rng = np.random.default_rng(args.seed)
    queries = make_queries(rng, args.queries)
    warmup = make_queries(np.random.default_rng(args.seed + 1), args.warmup)
    with tempfile.TemporaryDirectory(prefix="crossmodal-bench-") as tmp:
        start = time.perf_counter()
        collection = Collection.create(Path(tmp) / "index", model=args.model,
                                       index_type=args.index_type)
        create_s = time.perf_counter() - start
        dim = collection.manifest.dim
        items = [{"id": f"img_{i:06d}", "path": f"img_{i:06d}.jpg", "captions": [phrase(rng)]}
                 for i in range(args.n)]
        start = time.perf_counter()
        collection.add_vectors(items, unit_vectors(rng, args.n, dim),
                               unit_vectors(rng, args.n, dim))
        add_s = time.perf_counter() - start
        print(f"index: {len(collection):,} items, {dim}-d, {args.index_type}; create (loads the "
              f"encoder) {create_s:.1f} s, add_vectors {add_s:.1f} s", file=sys.stderr)

        encoder = collection.encoder
        for q in warmup:  # first calls allocate buffers and pick kernels
            collection.search_text(q, k=args.k)
        hits = collection.search_text(queries[0], k=args.k)
        assert len(hits) == min(args.k, args.n) and hits[0].path.endswith(".jpg"), hits[:1]
        load_before = os.getloadavg()
        end_to_end = timed(lambda q: collection.search_text(q, k=args.k), queries)
        vectors = [encoder.encode_texts([q]) for q in queries]
        encode = timed(lambda q: encoder.encode_texts([q]), queries)
        search = timed(lambda v: collection.images.search(v, args.k), vectors)
        search_hits = timed(lambda v: collection.search_vectors(v, args.k), vectors)

    total = summary(end_to_end)
    parts = {"encode_only_p50_ms": float(np.median(encode)),
             "search_only_p50_ms": float(np.median(search)),
             "search_and_hits_p50_ms": float(np.median(search_hits))}
    verdict = "met" if total["p50_ms"] <= args.goal_ms else "MISSED"
    print(f"model={args.model} N={args.n:,} dim={dim} index={args.index_type} "
          f"queries={len(queries)} k={args.k} (one query per call, after {args.warmup} warm-up)")
    print(f"{'stage':<28} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, ms in (("search_text (end to end)", end_to_end), ("encode only", encode),
                     ("search only (faiss)", search), ("search_vectors (+hits)", search_hits)):
        s = summary(ms)
        print(f"{name:<28} {s['p50_ms']:>8.2f} {s['p90_ms']:>8.2f} {s['p99_ms']:>8.2f} "
              f"{s['mean_ms']:>8.2f}")
    alone = parts["encode_only_p50_ms"] + parts["search_and_hits_p50_ms"]
    print(f"goal p50 <= {args.goal_ms:g} ms: {verdict}; encode + search_vectors medians measured "
          f"apart sum to {alone:.2f} ms, end to end exceeds that by "
          f"{total['p50_ms'] - alone:.2f} ms")
    print(f"example: {queries[0]!r} -> {hits[0].id} ({hits[0].score:.3f}); load average "
          f"before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    result = {"model": args.model, "n": args.n, "dim": dim, "index_type": args.index_type,
              "queries": len(queries), "k": args.k, "warmup": args.warmup,
              "create_s": create_s, "add_vectors_s": add_s, **total, **parts,
              "goal_p50_ms": args.goal_ms, "goal": verdict,
              "faiss_threads": args.faiss_threads or "default",
              "torch_threads": args.torch_threads or "default", "cpu": cpu_description(),
              "example_queries": queries[:5]}
    write_result(RESULTS / f"{args.out}.json", result, envelope)


if __name__ == "__main__":
    main()
