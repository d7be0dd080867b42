"""Fine-tuning the default model (fusion:bilingual) on N Flickr8k train photos with their
English and human-written Chinese captions (5 + 5 per photo), cold: fresh feature and
export caches, so the wall time includes every first-use cost. The run is the user's
journey: `crossmodal finetune --data photos.csv --out DIR` (the default --from), with its
own held-out part (10 % of the photos by image, seed 0); with --val-photos the first N
Flickr8k val photos (both languages) are the held-out part instead.

Reports before/after Rsum per caption language, wall time per phase (from the model card),
the CPU-seconds of the run (the machine may be shared: wall time depends on the load, CPU
time much less) and the load average. A run on fewer photos than 2,000 also gives an
extrapolation to 2,000 photos, labelled as such (the features grow with the photos and
captions, the training with the pairs).

    nice -n 15 python benchmarks/suite/finetune_default.py --photos 2000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import RESULTS, begin_run, write_result
from crossmodal.data.flickr8k_cn import read_captions

TARGET_PHOTOS = 2000
PER_PHOTO_PHASES = ("image_features", "text_features", "caption_languages", "training")


def write_table(root: Path, split: str, photos: int, table: Path) -> int:
    """The first `photos` of a split, each with its English and Chinese (zhc) captions."""
    names = [line.strip() for line in (root / f"flickr8k{split}.txt").read_text().splitlines()
             if line.strip()][:photos]
    captions = {lang: read_captions(root, lang) for lang in ("en", "zh")}
    rows = 0
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        for name in names:
            for by_name in captions.values():
                key = next(k for k in (name, f"{name}.jpg") if k in by_name)
                for caption in by_name[key]:
                    writer.writerow([root / "images" / f"{name}.jpg", caption])
                    rows += 1
    return rows


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rsums(card: dict) -> dict:
    groups = {"all": {"before": card["before"], "after": card["after"]},
              **card.get("by_language", {})}
    return {group: {"before": round(pair["before"]["rsum"], 1),
                    "after": round(pair["after"]["rsum"], 1)} for group, pair in groups.items()}


def extrapolate(phases: dict, photos: int) -> dict | None:
    """Phases that grow with the photos scaled to TARGET_PHOTOS; the rest as measured."""
    if photos >= TARGET_PHOTOS:
        return None
    scale = TARGET_PHOTOS / photos
    scaled = {k: round(v * scale if k in PER_PHOTO_PHASES else v, 1) for k, v in phases.items()}
    return {"note": f"extrapolated from {photos} photos (x{scale:g} on "
                    f"{', '.join(PER_PHOTO_PHASES)}), not measured",
            "phases_s": scaled, "total_s": round(sum(scaled.values()), 1)}


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/flickr8k-cn"))
    parser.add_argument("--photos", type=int, default=TARGET_PHOTOS)
    parser.add_argument("--val-photos", type=int, default=0,
                        help="Hold out the first N Flickr8k val photos instead of a part of "
                             "the training photos.")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--work", type=Path, default=None, help="Keep the run here.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = args.data.resolve()
    work = args.work or Path(tempfile.mkdtemp(prefix="finetune-default-"))
    work.mkdir(parents=True, exist_ok=True)
    pairs = write_table(root, "train", args.photos, work / "photos.csv")
    val = []
    if args.val_photos:
        write_table(root, "val", args.val_photos, work / "val.csv")
        val = ["--val", f"table:{work / 'val.csv'}"]
    env = {**os.environ, "CROSSMODAL_CACHE": str(work / "cache")}  # cold: nothing cached
    env.pop("CROSSMODAL_ONNX_CACHE", None)
    command = ["crossmodal", "finetune", "--data", str(work / "photos.csv"),
               "--out", str(work / "model"), "--epochs", str(args.epochs), "--quiet",
               "--overwrite", *val]
    print("$", " ".join(command), flush=True)
    cpu, started = child_cpu_s(), time.perf_counter()
    done = subprocess.run(command, env=env, text=True, capture_output=True)
    wall, cpu = time.perf_counter() - started, child_cpu_s() - cpu
    print(done.stdout, done.stderr[-3000:], sep="\n")
    done.check_returncode()
    card = json.loads((work / "model" / "model-card.json").read_text(encoding="utf-8"))
    payload = {"base": card["base_model"], "photos": args.photos, "pairs": pairs,
               "captions": "Flickr8k-CN train: 5 English + 5 human-written Chinese (zhc)",
               "held_out": card["held_out"]["how"], "counts": card["counts"],
               "epochs": args.epochs, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "caches": "cold (features, ONNX exports)", "phases_s": card["phases_s"],
               "rsum": rsums(card), "members": card["members"],
               "extrapolated_to_2000": extrapolate(card["phases_s"], args.photos),
               "torch_threads": card["torch_threads"], "niceness": os.nice(0),
               "before": card["before"], "after": card["after"],
               "by_language": card.get("by_language"), "command": command}
    print(json.dumps({k: payload[k] for k in ("wall_s", "cpu_s", "phases_s", "rsum",
                                              "extrapolated_to_2000")}, indent=1))
    out = args.out or RESULTS / f"finetune_default_{args.photos}.json"
    print("wrote", write_result(out, payload, envelope))


if __name__ == "__main__":
    main()
