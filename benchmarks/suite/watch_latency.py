"""How fast a watched folder reaches the index: `crossmodal index DIR --watch`'s machinery
(a real watchdog observer, the default quiet and settle times, commits through Collection).

The encoder is tests.fakes.FakeEncoder (colour means, microseconds an image), so the numbers
are the watch's own: waiting for files to settle, walking, hashing, committing. A real model
adds its embedding time per new image on top (benchmarks/suite/embed_throughput.py).

    startup rescan   the first batch over N unchanged files (stat only): what a restart costs
    one file         a photo saved, until its batch is committed: median and p90 of --reps
    burst            --burst photos saved back to back, until the last is committed; batches
    folder rename    a folder of --burst photos renamed: committed with their vectors kept

    python benchmarks/suite/watch_latency.py --n 5000 --burst 200 --reps 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.fakes

from tests.fakes import FakeEncoder  # noqa: E402
from tests.image_helpers import write_image  # noqa: E402

from _common import begin_run, write_result  # noqa: E402
from crossmodal.collection.watch import FolderWatch  # noqa: E402
from crossmodal.engine import Collection  # noqa: E402


class Timed:
    """A FolderWatch in a thread; each committed batch with the time it was reported."""

    def __init__(self, collection: Collection, root: Path):
        self.batches: list[tuple[float, object]] = []
        self.changed = threading.Condition()
        self.watch = FolderWatch(collection, root, self._on_batch)
        self.watch.start()
        self.started = time.perf_counter()
        self.thread = threading.Thread(target=self.watch.run, daemon=True)
        self.thread.start()

    def _on_batch(self, report) -> None:  # noqa: ANN001
        with self.changed:
            self.batches.append((time.perf_counter(), report))
            self.changed.notify_all()

    def until(self, condition, timeout: float = 120.0) -> float:  # noqa: ANN001
        """When `condition(batches)` first held (perf_counter)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not condition(self.batches):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no such batch: {self.batches[-3:]}")
                self.changed.wait(0.05)
            return self.batches[-1][0]

    def stop(self) -> None:
        self.watch.stop()
        self.thread.join(30)


def added(batches, start: int) -> set[str]:  # noqa: ANN001
    return {i for _, report in batches[start:] for i in report.added}


def measure(args, folder: Path, index: Path) -> dict:  # noqa: ANN001
    encoder = FakeEncoder()
    for n in range(args.n):
        write_image(folder / f"{n // 500:03d}" / f"{n:06d}.jpg", (n % 256, n // 256 % 256, 9))
    collection = Collection.create(index, model="fake:colours", encoder=encoder)
    collection.add_paths([folder], progress=False)
    timed = Timed(collection, folder)
    rescan_s = timed.until(lambda b: b) - timed.started
    singles = []
    for rep in range(args.reps):
        start = len(timed.batches)
        write_image(folder / "new" / f"single-{rep}.png", (rep * 20, 200, 40))
        saved = time.perf_counter()
        singles.append(timed.until(lambda b, s=start, r=rep: f"new/single-{r}.png"
                                   in added(b, s)) - saved)
    start = len(timed.batches)
    wanted = {f"burst/{n:04d}.png" for n in range(args.burst)}
    for n in range(args.burst):
        write_image(folder / "burst" / f"{n:04d}.png", (n % 256, n // 256 * 40, 200))
    last_saved = time.perf_counter()
    burst_s = timed.until(lambda b: wanted <= added(b, start)) - last_saved
    burst_batches = len(timed.batches) - start
    start, embedded = len(timed.batches), encoder.images_seen
    os.rename(folder / "burst", folder / "renamed")
    renamed_at = time.perf_counter()
    rename_s = timed.until(lambda b: sum(len(r.renamed) for _, r in b[start:])
                           >= args.burst) - renamed_at
    timed.stop()
    return {
        "files": args.n, "startup_rescan_s": round(rescan_s, 3),
        "one_file_ms": {"median": round(1000 * statistics.median(singles), 1),
                        "p90": round(1000 * sorted(singles)[int(0.9 * (len(singles) - 1))], 1),
                        "reps": args.reps},
        "burst": {"files": args.burst, "after_last_save_s": round(burst_s, 3),
                  "batches": burst_batches},
        "folder_rename": {"files": args.burst, "s": round(rename_s, 3),
                          "images_embedded_again": encoder.images_seen - embedded},
        "timing": {"quiet_s": timed.watch.queue.quiet_s, "settle_s": timed.watch.queue.settle_s},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", default="watch_latency")
    args = parser.parse_args()
    envelope = begin_run()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args, Path(tmp) / "photos", Path(tmp) / "index")
    print(f"startup rescan of {result['files']} unchanged files: "
          f"{result['startup_rescan_s']:.2f} s")
    print(f"one file saved -> committed: median {result['one_file_ms']['median']} ms, "
          f"p90 {result['one_file_ms']['p90']} ms")
    print(f"burst of {args.burst}: committed {result['burst']['after_last_save_s']:.2f} s after "
          f"the last save, in {result['burst']['batches']} batches")
    print(f"folder of {args.burst} renamed: {result['folder_rename']['s']:.2f} s, "
          f"{result['folder_rename']['images_embedded_again']} images embedded again")
    path = write_result(Path(__file__).resolve().parents[1] / "results" / f"{args.out}.json",
                        result, envelope)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
