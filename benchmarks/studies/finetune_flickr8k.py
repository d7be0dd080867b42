"""`crossmodal finetune` on a part of Flickr8k train standing in for "the user's photos":
the first N train photos with their 5 captions each, measured on the val split (1,000 photos),
cold (fresh feature and export caches, so the wall time includes every first-use cost).

Warm start (the base model's heads) and, with --fresh-heads, a cold start (seeded random
heads) show what fine-tuning buys from each. The shipped lite-en / lite-zh heads were
trained on all of Flickr8k train, so a warm start here mostly tests that a fine-tune does
no harm; the cold start shows what the recipe learns from N photos alone.

    nice -n 15 python benchmarks/studies/finetune_flickr8k.py --tower lite-en --language en
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import RESULTS, begin_run, write_result
from crossmodal.data.flickr8k_cn import read_captions


def write_part(root: Path, language: str, photos: int, table: Path, skip: int = 0) -> int:
    names = [line.strip() for line in (root / "flickr8ktrain.txt").read_text().splitlines()
             if line.strip()][skip : skip + photos]
    captions = read_captions(root, language)
    rows = 0
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        for name in names:
            key = next(k for k in (name, f"{name}.jpg") if k in captions)
            for caption in captions[key]:
                writer.writerow([root / "images" / f"{name}.jpg", caption])
                rows += 1
    return rows


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/flickr8k-cn"))
    parser.add_argument("--tower", default="lite-en")
    parser.add_argument("--language", default="en")
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--skip", type=int, default=0, help="Start after this many photos.")
    parser.add_argument("--base", default=None, help="Model to start from (default: --tower).")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=None, help="default: finetune's")
    parser.add_argument("--fresh-heads", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="Keep the run here.")
    parser.add_argument("--cache", type=Path, default=None,
                        help="Reuse this feature cache (default: a fresh one, a cold run).")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    start = "cold" if args.fresh_heads else "warm"
    work = args.work or Path(tempfile.mkdtemp(prefix="finetune-flickr8k-"))
    work.mkdir(parents=True, exist_ok=True)
    table = work / "photos.csv"
    pairs = write_part(args.data.resolve(), args.language, args.photos, table, args.skip)
    base = args.base or f"towers:{args.tower}"
    cache = args.cache or work / "cache"  # by default cold: nothing cached
    cold = args.cache is None or not (cache / "features").is_dir()
    env = {**os.environ, "CROSSMODAL_CACHE": str(cache)}
    env.pop("CROSSMODAL_ONNX_CACHE", None)
    command = ["crossmodal", "finetune", "--from", base, "--data", str(table),
               "--val", f"flickr8k-cn:{args.data.resolve()}:val:{args.language}",
               "--out", str(work / "model"), "--epochs", str(args.epochs),
               "--seed", str(args.seed), "--quiet", "--overwrite",
               *(["--lr", str(args.lr)] if args.lr else []),
               *(["--fresh-heads"] if args.fresh_heads else [])]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, text=True, capture_output=True)
    wall = time.perf_counter() - started
    print(done.stdout, done.stderr[-3000:], sep="\n")
    done.check_returncode()
    card = json.loads((work / "model" / "model-card.json").read_text(encoding="utf-8"))
    payload = {"tower": args.tower, "base": base, "language": args.language, "start": start,
               "photos": args.photos, "first_photo": args.skip, "pairs": pairs,
               "epochs": args.epochs, "seed": args.seed,
               "lr": card["recipe"]["lr"],
               "val": f"flickr8k-cn val ({args.language})", "wall_s": round(wall, 1),
               "caches": "cold (features, ONNX exports)" if cold else f"reused {cache}",
               "phases_s": card["phases_s"], "best_epoch": card["best_epoch"],
               "before": card["before"], "after": card["after"],
               "threads": card["torch_threads"], "command": command}
    lr = f"_lr{args.lr:g}" if args.lr else ""
    part = f"_from{args.skip}" if args.skip else ""
    out = args.out or RESULTS / f"finetune_flickr8k_{args.tower}_{start}{lr}{part}.json"
    print("wrote", write_result(out, payload, envelope))


if __name__ == "__main__":
    main()
