"""Duplicate finding: choose the threshold on train photos, measure it on val photos.

Two sets are built the same way in a temporary folder, one from Flickr8k train photos (to
choose the threshold) and one from val photos (to measure it): PHOTOS distinct photos (read
in place, through symlinks), of which EDITED get COPIES edited copies each, every copy a
different edit drawn from EDITS (resized, JPEG re-encoded at quality 30, cropped 5-10%,
rotated 90 or 180 degrees, straightened by a few degrees, brighter or darker, a byte-for-byte
copy). Each set is indexed with the real CLI (`crossmodal index`) and grouped with the
library (crossmodal.collection.duplicates: exact hashes, the image store's kNN, union-find).

Scored pairwise: a pair of items is a true pair when both come from one photo (the photo and
its copies: 6 pairs for a photo with 3 copies); precision is the share of pairs put in one
group that are true pairs, recall the share of true pairs put in one group. Also: the share
of edited photos whose group is exactly the photo and its copies, and the recall per edit
(the photo and that copy in one group).

The threshold rule, fixed before measuring: on the train set, the lowest threshold (on a
0.0025 grid) at and above which pairwise precision stays >= CALIBRATION_PRECISION.

For a fusion model the stored vector concatenates its members' unit vectors, so its cosine
is the weighted mean of theirs; each member's own slice is scored too (dense, a diagnostic),
to see whether one member alone would do better.

    nice -n 15 python benchmarks/accuracy/duplicates.py --data /work/shared/data/flickr8k-cn \
        --model fusion:bilingual --model towers:lite-en --write-package-data
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np
from PIL import Image, ImageEnhance

from _common import begin_run, run, write_result
from crossmodal.collection.collection import Collection
from crossmodal.collection.duplicates import group_positions, similar_pairs
from crossmodal.models.duplicate_thresholds import write_threshold

RESULTS = Path(__file__).resolve().parents[1] / "results"
CALIBRATION_PRECISION = 0.98
GRID = np.round(np.arange(0.5, 1.0001, 0.0025), 4)
FLOOR = float(GRID[0])
EDIT_MARK = "__"  # copies/PHOTO__EDIT.jpg


def _resize(im: Image.Image, rng: random.Random) -> Image.Image:
    scale = rng.uniform(0.35, 0.6)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                     Image.Resampling.LANCZOS)


def _crop(im: Image.Image, rng: random.Random) -> Image.Image:
    share = rng.uniform(0.05, 0.10)  # of each side's length, split unevenly between its ends
    left, top = rng.uniform(0, share), rng.uniform(0, share)
    return im.crop((round(im.width * left), round(im.height * top),
                    round(im.width * (1 - share + left)), round(im.height * (1 - share + top))))


def _straighten(im: Image.Image, rng: random.Random) -> Image.Image:
    angle = rng.choice((-1, 1)) * rng.uniform(3, 8)
    turned = im.rotate(angle, Image.Resampling.BICUBIC)
    margin = 0.09  # enough to cut the corners an 8-degree turn leaves empty
    return turned.crop((round(im.width * margin), round(im.height * margin),
                        round(im.width * (1 - margin)), round(im.height * (1 - margin))))


def _brightness(im: Image.Image, rng: random.Random) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(rng.choice((0.7, 1.35)))


EDITS = {
    "resize": (_resize, 90),
    "jpeg-q30": (lambda im, rng: im, 30),
    "crop": (_crop, 90),
    "rotate90": (lambda im, rng: im.transpose(Image.Transpose.ROTATE_90), 90),
    "rotate180": (lambda im, rng: im.transpose(Image.Transpose.ROTATE_180), 90),
    "straighten": (_straighten, 90),
    "brightness": (_brightness, 90),
    "exact": (None, None),
}


def build_set(data: Path, split: str, folder: Path, photos: int, edited: int, copies: int,
              seed: int) -> dict[str, str]:
    """The set's files under `folder`; item id -> the photo it comes from."""
    names = [f"{name}.jpg" for name in
             (data / f"flickr8k{split}.txt").read_text(encoding="utf-8").split()]
    rng = random.Random(seed)
    chosen = rng.sample(names, photos)
    source: dict[str, str] = {}
    (folder / "photos").mkdir(parents=True)
    (folder / "copies").mkdir()
    for name in chosen:
        (folder / "photos" / name).symlink_to(data / "images" / name)
        source[f"photos/{name}"] = name
    for name in chosen[:edited]:
        original = data / "images" / name
        with Image.open(original) as im:
            im = im.convert("RGB")
            for edit in rng.sample(sorted(EDITS), copies):
                target = folder / "copies" / f"{Path(name).stem}{EDIT_MARK}{edit}.jpg"
                make, quality = EDITS[edit]
                if make is None:
                    shutil.copyfile(original, target)
                else:
                    make(im, rng).save(target, quality=quality)
                source[f"copies/{target.name}"] = name
    return source


def index_set(folder: Path, model: str, into: Path) -> float:
    started = time.perf_counter()
    run(["crossmodal", "index", str(folder), "--into", str(into), "--model", model, "--quiet"])
    return time.perf_counter() - started


def truth_pairs(source: list[str]) -> int:
    return sum(c * (c - 1) // 2 for c in Counter(source).values())


def score(groups: list[list[int]], source: list[str], ids: list[str]) -> dict:
    """Pairwise precision and recall, exact groups, and recall per edit."""
    predicted = correct = 0
    group_of: dict[int, int] = {}
    for number, group in enumerate(groups):
        predicted += len(group) * (len(group) - 1) // 2
        correct += sum(c * (c - 1) // 2 for c in Counter(source[p] for p in group).values())
        group_of.update({p: number for p in group})
    members: dict[str, set[int]] = {}
    for position, photo in enumerate(source):
        members.setdefault(photo, set()).add(position)
    edited = {photo: rows for photo, rows in members.items() if len(rows) > 1}
    exact_groups = sum(1 for rows in edited.values()
                       if min(rows) in group_of and rows == set(groups[group_of[min(rows)]]))
    per_edit: dict[str, list[bool]] = {}
    original = {photo: next(p for p in rows if ids[p].startswith("photos/"))
                for photo, rows in edited.items()}
    for position, item_id in enumerate(ids):
        if item_id.startswith("copies/"):
            edit = item_id.rsplit(EDIT_MARK, 1)[1].removesuffix(".jpg")
            first = original[source[position]]
            together = position in group_of and group_of.get(first) == group_of[position]
            per_edit.setdefault(edit, []).append(together)
    true = truth_pairs(source)
    return {"precision": round(correct / predicted, 4) if predicted else None,
            "recall": round(correct / true, 4), "pairs_predicted": predicted,
            "pairs_true": true, "groups": len(groups),
            "photos_grouped_exactly": round(exact_groups / len(edited), 4),
            "recall_per_edit": {e: round(float(np.mean(v)), 4)
                                for e, v in sorted(per_edit.items())}}


def calibrate(curve: list[dict]) -> float:
    """The lowest grid threshold at and above which precision stays >= the target."""
    chosen = None
    for row in reversed(curve):  # from the highest threshold down
        if row["precision"] is not None and row["precision"] < CALIBRATION_PRECISION:
            break
        chosen = row["threshold"]
    if chosen is None:
        raise SystemExit("no threshold reaches the calibration precision")
    return chosen


def pairs_of(index: Path) -> tuple[list[dict], list[str], tuple]:
    collection = Collection.open(index)
    ids = [item["id"] for item in collection.items]
    return collection.items, ids, similar_pairs(collection.images, FLOOR)


def dense_pairs(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs scoring >= FLOOR (a small set: the diagnostic only)."""
    sims = vectors @ vectors.T
    rows, cols = np.nonzero(np.triu(sims >= FLOOR, 1))
    return rows, cols, sims[rows, cols]


def member_slices(model: str) -> list[tuple[str, slice]]:
    from crossmodal.models.registry import load_encoder

    encoder = load_encoder(model)
    if not hasattr(encoder, "encoders"):
        return []
    out, start = [], 0
    for member, part in zip(encoder.members, encoder.encoders, strict=True):
        out.append((member.model, slice(start, start + part.dim)))
        start += part.dim
    return out


def measure(sets: dict, items: dict, pairs: dict, sources: dict, ids: dict) -> dict:
    train_curve = [{"threshold": float(t), **score(group_positions(items["train"],
                    pairs["train"], t), sources["train"], ids["train"])} for t in GRID]
    threshold = calibrate(train_curve)
    val = score(group_positions(items["val"], pairs["val"], threshold), sources["val"],
                ids["val"])
    nearby = [{"threshold": t, **{k: v for k, v in score(group_positions(
        items["val"], pairs["val"], t), sources["val"], ids["val"]).items()
        if k in ("precision", "recall")}} for t in
        sorted({round(threshold + d, 4) for d in (-0.03, -0.02, -0.01, 0, 0.01, 0.02)})]
    calib = next(r for r in train_curve if r["threshold"] == threshold)
    return {"threshold": threshold, "train_at_threshold": calib, "val": val,
            "val_near_threshold": nearby}


def run_model(model: str, sets: dict, work: Path) -> dict:
    items, ids, pairs, sources, seconds, vectors = {}, {}, {}, {}, {}, {}
    for split, (folder, source) in sets.items():
        index = work / f"index-{model.replace(':', '_')}-{split}"
        seconds[split] = round(index_set(folder, model, index), 1)
        items[split], ids[split], pairs[split] = pairs_of(index)
        sources[split] = [source[i] for i in ids[split]]
        vectors[split] = Collection.open(index).images.get_vectors(
            np.arange(len(ids[split])))
    result = {"model": model, "index_seconds": seconds,
              "images": {s: len(v) for s, v in ids.items()},
              **measure(sets, items, pairs, sources, ids)}
    members = {}
    for name, part in member_slices(model):
        sliced = {s: v[:, part] / np.linalg.norm(v[:, part], axis=1, keepdims=True)
                  for s, v in vectors.items()}
        member_pairs = {s: dense_pairs(sliced[s]) for s in sliced}
        members[name] = measure(sets, items, member_pairs, sources, ids)
    if members:
        result["member_slices"] = members
    fingerprint = Collection.open(work / f"index-{model.replace(':', '_')}-val") \
        .manifest.model_fingerprint
    return {**result, "fingerprint": fingerprint}


def table(results: list[dict]) -> str:
    lines = [f"{'model':<34} {'thr':>6} {'P':>6} {'R':>6} {'exact grp':>9}  recall per edit"]
    for r in results:
        rows = [(r["model"], r)] + [(f"  {name} (slice)", m)
                                    for name, m in r.get("member_slices", {}).items()]
        for name, m in rows:
            v = m["val"]
            edits = " ".join(f"{e}={x:.2f}" for e, x in v["recall_per_edit"].items())
            lines.append(f"{name:<34} {m['threshold']:>6.4f} {v['precision']:>6.3f} "
                         f"{v['recall']:>6.3f} {v['photos_grouped_exactly']:>9.3f}  {edits}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="Flickr8k-CN root")
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--edited", type=int, default=300)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-package-data", action="store_true",
                        help="store each model's threshold as its calibrated default")
    parser.add_argument("--out", type=Path, default=RESULTS / "duplicates.json")
    args = parser.parse_args()
    envelope = begin_run()
    models = args.model or ["fusion:bilingual"]
    with tempfile.TemporaryDirectory(prefix="crossmodal-dupes-") as tmp:
        work = Path(tmp)
        sets = {}
        for split, seed in (("train", args.seed), ("val", args.seed + 1)):
            source = build_set(args.data, split, work / split, args.photos, args.edited,
                               args.copies, seed)
            sets[split] = (work / split, source)
        results = [run_model(model, sets, work) for model in models]
    print(table(results))
    if args.write_package_data:
        for r in results:
            write_threshold(r["model"], r["fingerprint"], r["threshold"],
                            f"flickr8k-cn train, {args.photos} photos, {args.edited} with "
                            f"{args.copies} edited copies; precision "
                            f">= {CALIBRATION_PRECISION}")
    payload = {"set": {"photos": args.photos, "edited": args.edited, "copies": args.copies,
                       "edits": sorted(EDITS), "seed": args.seed,
                       "calibration_precision": CALIBRATION_PRECISION},
               "models": results}
    print("wrote", write_result(args.out, payload, envelope))


if __name__ == "__main__":
    main()
