"""Ray embedding throughput with 1 and 2 encoder actors, end to end into the clip layout.

Takes the first N Flickr8k val photos (read in place) with their captions as a CSV of
image_path,caption pairs, and runs `crossmodal embed` (embed_plan) on a local Ray cluster:
once with 1 actor, once with 2, each into a fresh folder. The time counts everything a user
waits for after Ray is up: actor start, model load, decode, image + caption encoding, writes.

    python benchmarks/suite/ray_embed.py --data ../shared/data/flickr8k-cn --images 300
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import begin_run, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.distributed.inputs import plan_shards
from crossmodal.distributed.ray_embed import embed_plan

RESULTS = Path(__file__).resolve().parents[1] / "results"


def write_pairs(data, images: int, path: Path) -> int:
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "caption"])
        for text, row in zip(data.texts, data.text_image, strict=True):
            if row < images:
                writer.writerow([str(data.images[int(row)]), text])
                rows += 1
    return rows


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--data", default="../shared/data/flickr8k-cn")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()

    import ray

    data = load_flickr8k_cn(args.data, "val", "en")
    load_before = os.getloadavg()[0]
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "pairs.csv"
        pairs = write_pairs(data, args.images, table)
        plan = plan_shards([table], shard_size=args.shard_size)
        for workers in map(int, args.workers.split(",")):
            start = time.perf_counter()
            report = embed_plan(plan, Path(tmp) / f"out-{workers}", args.model,
                                workers=workers, progress=False)
            seconds = time.perf_counter() - start
            runs.append({"workers": workers, "seconds": round(seconds, 1),
                         "images_per_s": round(args.images / seconds, 1),
                         "pairs_per_s": round(pairs / seconds, 1), "shards": report.shards,
                         "rows": report.rows})
    ray.shutdown()
    result = {"model": args.model, "images": args.images, "pairs": pairs,
              "shard_size": args.shard_size, "cpus": os.cpu_count(),
              "load_average_before": round(load_before, 1), "runs": runs}
    print(f"{'workers':>7} {'seconds':>8} {'images/s':>9} {'pairs/s':>8}")
    for run in runs:
        print(f"{run['workers']:>7} {run['seconds']:>8} {run['images_per_s']:>9} "
              f"{run['pairs_per_s']:>8}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ray_embed_{args.model.replace(':', '_')}.json"
    write_result(out, result, envelope)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
