"""Image encoding of a fusion with and without shared backbone passes, interleaved in one
process (the same decoded photos, best of N rounds each), so others' load on a shared machine
hits both alike: the speed-up of running each backbone once per image.

    python benchmarks/suite/shared_backbones.py --models fusion:ensemble,fusion:bilingual --rounds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import RESULTS, begin_run, write_result  # noqa: E402
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.data.images import load_image
from crossmodal.models.registry import load_encoder


def rate(encoder, images, groups: list) -> float:
    encoder._image_groups = groups  # []: each member runs its own graph
    start = time.perf_counter()
    encoder.encode_images(images)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fusion:ensemble,fusion:bilingual")
    parser.add_argument("--data", default="../shared/data/flickr8k-cn")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    paths = load_flickr8k_cn(args.data, "val", "en").images[: args.images]
    rows = []
    for model in args.models.split(","):
        encoder = load_encoder(model)
        images = [load_image(p, target_size=encoder.preprocessing.size) for p in paths]
        encoder.encode_images(images[:8])  # warm-up; finds the groups (sessions loaded once)
        groups = {True: encoder._image_groups, False: []}
        rate(encoder, images[:8], [])
        best = {True: 0.0, False: 0.0}
        for _ in range(args.rounds):
            for shared in (False, True):
                best[shared] = max(best[shared], rate(encoder, images, groups[shared]))
        rows.append({"model": model, "own_passes_images_per_s": round(best[False], 1),
                     "shared_passes_images_per_s": round(best[True], 1),
                     "speed_up": round(best[True] / best[False], 2)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"images": len(paths), "rounds": args.rounds, "rows": rows,
              "note": "encode_images on decoded photos (no JPEG decode), best of the rounds"}
    write_result(RESULTS / "shared_backbones.json", result, envelope)


if __name__ == "__main__":
    main()
