"""Time and peak memory of all retrieval metrics (both directions) for an image x caption set.

Default: 5,000 images x 25,000 captions (COCO 5K size), 5 captions per image, 256-d random
embeddings; the similarity matrix is computed in query chunks, so peak memory stays at
chunk x gallery instead of the full matrix.

    python benchmarks/suite/metrics_speed.py
    python benchmarks/suite/metrics_speed.py --images 20000 --captions 100000
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np

from _common import begin_run, write_result
from crossmodal.metrics.evaluate import evaluate_pairs

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--captions", type=int, default=25000)
    parser.add_argument("--dim", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    image = rng.standard_normal((args.images, args.dim), dtype=np.float32)
    text = rng.standard_normal((args.captions, args.dim), dtype=np.float32)
    per_image = args.captions // args.images
    positives = [(t // per_image,) for t in range(args.captions)]
    evaluate_pairs(image[:100], text[: 100 * per_image], positives[: 100 * per_image])  # warm
    tracemalloc.start()
    start = time.perf_counter()
    report = evaluate_pairs(image, text, positives)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    full = args.images * args.captions * 4
    result = {"images": args.images, "captions": args.captions, "dim": args.dim,
              "seconds": round(seconds, 3), "peak_mib": round(peak / 2**20, 1),
              "full_matrix_mib": round(full / 2**20, 1), "rsum": report["rsum"]}
    print(f"{'images':>8} {'captions':>9} {'seconds':>8} {'peak MiB':>9} {'full matrix MiB':>16}")
    print(f"{args.images:>8} {args.captions:>9} {seconds:>8.2f} {peak / 2**20:>9.1f} "
          f"{full / 2**20:>16.1f}")
    RESULTS.mkdir(exist_ok=True)
    write_result((RESULTS / f"metrics_speed_{args.images}x{args.captions}.json"), result, envelope)


if __name__ == "__main__":
    main()
