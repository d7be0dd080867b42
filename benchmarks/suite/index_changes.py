"""What one change costs in a big index: add, remove or update one item, through Collection.

Builds an index folder of N items (seeded clustered `--dim`-d image vectors, `--captions`
caption vectors each) through `Collection.add_vectors`, folds it into one generation, then
times, `--reps` times each, one committed change as the CLI and the server make it:
  add      add_vectors of one new item (with its captions)
  remove   remove of one item
  update   remove + add of the same id (a re-indexed changed file: two commits)
Each row reports the median, 90th percentile and max in ms, and how many of the changes wrote
a new generation (the log passed its share, see crossmodal.collection.commits) instead of one
log record. Also: the time to open the folder (generation + log replay) and to write a full
generation (`compact`, what every commit cost before the log).

`--through server` makes the same changes as the HTTP API does (`LiveCollection.add_upload`
of a small PNG, encoded to random vectors, and `LiveCollection.remove`), on the server's one
long-lived in-memory index; its "open" is the server's start (open + id table).

    python benchmarks/suite/index_changes.py --n 200000 --kinds flat,hnsw
    python benchmarks/suite/index_changes.py --n 1000000 --dim 64 --out index_changes_1M
    python benchmarks/suite/index_changes.py --n 1000000 --dim 64 --through server \
        --out index_changes_1M_server
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import faiss
import numpy as np
from PIL import Image

from _common import begin_run, clustered_vectors, write_result  # noqa: E402
from crossmodal.engine import Collection  # noqa: E402
from crossmodal.models.protocol import ImagePreprocessing  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
START = time.perf_counter()


def log(message: str) -> None:  # progress goes to stderr, the table to stdout
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


class VectorsOnly:
    """Just enough of an Encoder for a collection fed precomputed vectors; what it "encodes"
    (the server path's uploads) becomes seeded random unit vectors."""

    def __init__(self, dim: int):
        self.model_id, self.fingerprint, self.dim = "bench:vectors", f"bench-{dim}", dim
        self.context_length = 77
        self.preprocessing = ImagePreprocessing(size=224, mean=(0.0,) * 3, std=(1.0,) * 3)
        self._rng = np.random.default_rng(1)

    def _vectors(self, n: int) -> np.ndarray:
        x = self._rng.standard_normal((n, self.dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def encode_images(self, images) -> np.ndarray:
        return self._vectors(len(images))

    def encode_texts(self, texts) -> np.ndarray:
        return self._vectors(len(texts))


class ThroughCollection:
    """Changes as the CLI and the Python API make them."""

    def __init__(self, collection: Collection):
        self.collection = collection

    def stamp(self) -> tuple[int, int]:
        return self.collection.stamp()

    def add(self, item: dict, image: np.ndarray, texts: np.ndarray) -> None:
        self.collection.add_vectors([item], image[None], texts)

    def remove(self, item_id: str) -> None:
        self.collection.remove([item_id])


class ThroughServer:
    """Changes as `POST /api/items` and `DELETE /api/items/ID` make them."""

    def __init__(self, live):
        from crossmodal.serve.live import Upload

        self.live = live
        png = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 40, 40)).save(png, "PNG")
        self.upload = Upload.decode(png.getvalue(), 10_000_000)

    def stamp(self) -> tuple[int, int]:
        return self.live._collection.stamp()

    def add(self, item: dict, image: np.ndarray, texts: np.ndarray) -> None:
        self.live.add_upload(self.upload, item["captions"], item["id"])

    def remove(self, item_id: str) -> None:
        self.live.remove(item_id)


def new_items(start: int, n: int, captions: int) -> list[dict]:
    return [{"id": f"photos/{i:08d}.jpg", "path": f"/data/photos/{i:08d}.jpg",
             "captions": [f"caption {c} of photo {i}" for c in range(captions)],
             "bytes": 123_456, "mtime_ns": 1_700_000_000_000_000_000 + i}
            for i in range(start, start + n)]


def build(folder: Path, kind: str, args, rng: np.random.Generator) -> Collection:
    params = {"M": args.hnsw_m, "ef_construction": args.hnsw_ef_construction} \
        if kind == "hnsw" else None
    collection = Collection.create(folder, index_type=kind, index_params=params,
                                   encoder=VectorsOnly(args.dim))
    for start in range(0, args.n, args.chunk):
        size = min(args.chunk, args.n - start)
        collection.add_vectors(new_items(start, size, args.captions),
                               clustered_vectors(rng, size, args.dim),
                               clustered_vectors(rng, size * args.captions, args.dim))
        log(f"{kind}: {start + size:,}/{args.n:,} items")
    return collection


def percentiles(ms: list[float]) -> dict:
    return {"median_ms": round(float(np.median(ms)), 1),
            "p90_ms": round(float(np.percentile(ms, 90)), 1), "max_ms": round(max(ms), 1)}


def time_changes(collection: ThroughCollection | ThroughServer, args,
                 rng: np.random.Generator) -> dict:
    caps = args.captions
    # drawn before the clock starts: clustered_vectors draws its 10,000 centres every call
    images = iter(clustered_vectors(rng, 2 * args.reps, args.dim))
    texts = iter(clustered_vectors(rng, 2 * args.reps * caps, args.dim).reshape(
        2 * args.reps, caps, args.dim))
    timings: dict[str, list[float]] = {"add": [], "remove": [], "update": []}
    generations = {name: 0 for name in timings}
    victims = rng.choice(args.n, 3 * args.reps, replace=False)
    for rep in range(args.reps):
        for name in timings:
            base = collection.stamp()[0]
            start = time.perf_counter()
            if name == "add":
                collection.add(new_items(args.n + rep, 1, caps)[0], next(images), next(texts))
            elif name == "remove":
                collection.remove(f"photos/{victims[rep]:08d}.jpg")
            else:
                item = new_items(int(victims[args.reps + rep]), 1, caps)[0]
                collection.remove(item["id"])
                collection.add(item, next(images), next(texts))
            timings[name].append((time.perf_counter() - start) * 1000)
            generations[name] += collection.stamp()[0] != base
    return {name: {**percentiles(ms), "new_generations": generations[name]}
            for name, ms in timings.items()}


def measure(kind: str, args, folder: Path) -> dict:
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    collection = build(folder, kind, args, rng)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    collection.compact()
    compact_s = time.perf_counter() - start
    del collection
    start = time.perf_counter()
    if args.through == "server":
        from crossmodal.serve.live import LiveCollection

        live = LiveCollection(folder, VectorsOnly(args.dim))
        changer: ThroughCollection | ThroughServer = ThroughServer(live)
    else:
        changer = ThroughCollection(Collection.open(folder, encoder=VectorsOnly(args.dim)))
    open_s = time.perf_counter() - start
    log(f"{kind}: built in {build_s:.0f}s, full generation {compact_s:.1f}s, open {open_s:.1f}s")
    changes = time_changes(changer, args, rng)
    start = time.perf_counter()
    reopened = Collection.open(folder, encoder=VectorsOnly(args.dim))
    replay_s = time.perf_counter() - start
    assert len(reopened) == args.n  # as many adds as removals; updates keep the count
    row = {"index": kind, "through": args.through, "items": args.n,
           "vectors": args.n * (1 + args.captions),
           "build_s": round(build_s, 1), "full_generation_s": round(compact_s, 2),
           "open_s": round(open_s, 2), "open_after_changes_s": round(replay_s, 2),
           "log_bytes": reopened.stamp()[1],
           "folder_mb": round(sum(p.stat().st_size for p in folder.iterdir()) / 2**20),
           **{name: stats for name, stats in changes.items()}}
    log(f"{kind}: {row}")
    return row


def print_table(rows: list[dict]) -> None:
    head = (f"{'index':<6} {'items':>9} {'vectors':>9} {'full gen s':>10} {'open s':>7} "
            f"{'add ms (med/p90/max)':>22} {'remove ms':>18} {'update ms':>18}")
    print(f"{head}\n{'-' * len(head)}")
    for r in rows:
        cells = [f"{r[n]['median_ms']:.0f}/{r[n]['p90_ms']:.0f}/{r[n]['max_ms']:.0f}"
                 for n in ("add", "remove", "update")]
        print(f"{r['index']:<6} {r['items']:>9,} {r['vectors']:>9,} "
              f"{r['full_generation_s']:>10.1f} {r['open_s']:>7.1f} {cells[0]:>22} "
              f"{cells[1]:>18} {cells[2]:>18}")


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--captions", type=int, default=1)
    parser.add_argument("--kinds", default="flat,hnsw")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--hnsw-ef-construction", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="where to build (default: a temp folder)")
    parser.add_argument("--through", choices=("collection", "server"), default="collection")
    parser.add_argument("--out", default="index_changes_200k")
    args = parser.parse_args()
    log(f"{args.n:,} items x (1 + {args.captions}) {args.dim}-d vectors, "
        f"{faiss.omp_get_max_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="index_changes_", dir=args.dir) as tmp:
        for kind in args.kinds.split(","):
            rows.append(measure(kind, args, Path(tmp) / kind))
    print(f"\nN={args.n:,} dim={args.dim} captions={args.captions} reps={args.reps} "
          f"load average at end {os.getloadavg()[0]:.1f}")
    print_table(rows)
    RESULTS.mkdir(exist_ok=True)
    result = {**{k: v for k, v in vars(args).items() if k != "dir"}, "faiss": faiss.__version__,
              "load_average_end": os.getloadavg(), "wall_s": round(time.perf_counter() - START),
              "rows": rows}
    write_result((RESULTS / f"{args.out}.json"), result, envelope)
    log(f"wrote {RESULTS / f'{args.out}.json'}")


if __name__ == "__main__":
    main()
