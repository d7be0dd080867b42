"""How long searches pause while a server catches up with another process's commits.

Builds an index of N items (seeded clustered vectors, as benchmarks/index_changes.py does),
opens it as the server does (`LiveCollection`, following the folder every `--refresh-s`),
and runs `--searchers` threads of searches the way the HTTP routes run them (a read lease,
then `search_vectors`). Meanwhile a second process (as `crossmodal index` / `remove` would)
commits `--commits` changes of `--batch` items each to the same folder (`--compact`: each
followed by a whole new generation). Reports, for the
quiet phase before the other process starts and for the phase while it commits:
  search ms     median, p99 and max of one search, lease wait included (the max is the
                longest pause a client saw)
  lease ms      the longest the server held its exclusive lease (applying a change in
                memory: what a search has to wait for at least)
The result file carries the envelope (command, git commit, date, CPU, load average).

    python benchmarks/suite/catchup_pause.py --n 200000 --batch 1000 --out catchup_pause_200k
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common
import crossmodal  # noqa: E402
from _common import begin_run, clustered_vectors, write_result  # noqa: E402
from crossmodal.engine import Collection  # noqa: E402
from crossmodal.models.protocol import ImagePreprocessing  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
START = time.perf_counter()


def log(message: str) -> None:  # progress to stderr, the table to stdout
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


class VectorsOnly:
    """Just enough of an Encoder for a collection fed precomputed vectors."""

    def __init__(self, dim: int):
        self.model_id, self.fingerprint, self.dim = "bench:vectors", f"bench-{dim}", dim
        self.context_length = 77
        self.preprocessing = ImagePreprocessing(size=224, mean=(0.0,) * 3, std=(1.0,) * 3)


def new_items(start: int, n: int, captions: int) -> list[dict]:
    return [{"id": f"photos/{i:08d}.jpg", "path": f"/data/photos/{i:08d}.jpg",
             "captions": [f"caption {c} of photo {i}" for c in range(captions)]}
            for i in range(start, start + n)]


def build(folder: Path, args) -> None:
    rng = np.random.default_rng(args.seed)
    collection = Collection.create(folder, index_type=args.kind, encoder=VectorsOnly(args.dim))
    for start in range(0, args.n, 100_000):
        size = min(100_000, args.n - start)
        collection.add_vectors(new_items(start, size, args.captions),
                               clustered_vectors(rng, size, args.dim),
                               clustered_vectors(rng, size * args.captions, args.dim))
    collection.compact()
    log(f"built {args.n:,} items ({args.kind}, dim {args.dim})")


def child(args) -> None:
    """The other process: `--commits` commits of `--batch` new items each (or removals of
    that many with --remove), `--gap-s` apart."""
    rng = np.random.default_rng(args.seed + 1)
    collection = Collection.open(args.folder, encoder=VectorsOnly(args.dim))
    for commit in range(args.commits):
        start = args.n + commit * args.batch
        if args.remove:
            collection.remove([f"photos/{i:08d}.jpg" for i in range(commit * args.batch,
                                                                     (commit + 1) * args.batch)])
        else:
            collection.add_vectors(
                new_items(start, args.batch, args.captions),
                rng.standard_normal((args.batch, args.dim), dtype=np.float32),
                rng.standard_normal((args.batch * args.captions, args.dim), dtype=np.float32))
        if args.compact:  # a whole new generation, as a compaction or a retrain writes
            collection.compact()
        time.sleep(args.gap_s)


class TimedLease:
    """The server's lease, recording how long each exclusive hold lasted."""

    def __init__(self, lease):
        self.lease, self.holds = lease, []

    def reading(self):
        return self.lease.reading()

    @contextlib.contextmanager
    def writing(self):
        with self.lease.writing():
            start = time.perf_counter()
            try:
                yield
            finally:
                self.holds.append((time.perf_counter() - start) * 1000)


def searches(live, dim: int, stop: threading.Event, out: list[tuple[float, float]],
             seed: int) -> None:
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        query = rng.standard_normal((1, dim), dtype=np.float32)
        start = time.perf_counter()
        with live.reading() as collection:
            collection.search_vectors(query, 10, threads=1)
        out.append((start, (time.perf_counter() - start) * 1000))
        time.sleep(0.002)  # a client's think time: other threads get the GIL


def stats(ms: list[float]) -> dict:
    if not ms:
        return {"count": 0}
    return {"count": len(ms), "median_ms": round(float(np.median(ms)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(max(ms), 1)}


def measure(args, folder: Path) -> dict:
    from crossmodal.serve.live import LiveCollection

    live = LiveCollection(folder, VectorsOnly(args.dim), refresh_s=args.refresh_s)
    live._lease = TimedLease(live._lease)
    live._collection.change_guard = live._lease.writing
    stop, timings = threading.Event(), []
    threads = [threading.Thread(target=searches, args=(live, args.dim, stop, timings, s))
               for s in range(args.searchers)]
    for thread in threads:
        thread.start()
    time.sleep(args.quiet_s)
    quiet = [ms for _, ms in timings]
    started = time.perf_counter()
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--folder", str(folder),
               *(f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                 if k in ("n", "dim", "captions", "commits", "batch", "gap_s", "seed"))]
    flags = [f"--{name}" for name in ("remove", "compact") if getattr(args, name)]
    subprocess.run([*command, *flags], check=True)
    deadline = time.monotonic() + 60
    expected = args.n + (-1 if args.remove else 1) * args.commits * args.batch
    while len(live._collection) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(args.refresh_s)
    stop.set()
    for thread in threads:
        thread.join()
    during = [ms for at, ms in timings if at >= started]
    assert len(live._collection) == expected, (len(live._collection), expected)
    return {"quiet": stats(quiet), "during_commits": stats(during),
            "lease_holds": stats(live._lease.holds)}


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--captions", type=int, default=1)
    parser.add_argument("--kind", default="flat", choices=("flat", "hnsw"))
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000, help="items per commit")
    parser.add_argument("--remove", action="store_true", help="commits remove items")
    parser.add_argument("--compact", action="store_true",
                        help="each commit is followed by a new generation (compact)")
    parser.add_argument("--gap-s", type=float, default=0.5)
    parser.add_argument("--searchers", type=int, default=2)
    parser.add_argument("--refresh-s", type=float, default=0.2)
    parser.add_argument("--quiet-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="where to build (default: a temp folder)")
    parser.add_argument("--out", default="catchup_pause_200k")
    parser.add_argument("--note", default="", help="recorded in the result (e.g. which code)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    log(f"{args.n:,} items, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="catchup_", dir=args.dir) as tmp:
        build(Path(tmp) / "index", args)
        row = measure(args, Path(tmp) / "index")
    result = {**{k: v for k, v in vars(args).items() if k not in ("dir", "child", "folder")},
              "crossmodal_source": str(Path(crossmodal.__file__).parent), **row}
    print(f"\nN={args.n:,} {args.kind} dim={args.dim} captions={args.captions}: "
          f"{args.commits} commits of {args.batch} {'removals' if args.remove else 'additions'}"
          f"{' + compact' if args.compact else ''} by another process")
    print(f"{'phase':<16} {'searches':>8} {'median ms':>9} {'p99 ms':>8} {'max ms':>8}")
    for phase in ("quiet", "during_commits"):
        s = row[phase]
        print(f"{phase:<16} {s['count']:>8} {s.get('median_ms', 0):>9} {s.get('p99_ms', 0):>8} "
              f"{s.get('max_ms', 0):>8}")
    holds = row["lease_holds"]
    print(f"exclusive lease: {holds['count']} holds, longest {holds.get('max_ms', 0)} ms")
    written = write_result(RESULTS / f"{args.out}.json", result, envelope)
    print(f"CPU: {envelope['cpu']['model'] if envelope['cpu'] else 'unknown'}; load average "
          f"{envelope['load_average']['before'][0]} before, {os.getloadavg()[0]:.2f} after")
    log(f"wrote {written}")


if __name__ == "__main__":
    main()
