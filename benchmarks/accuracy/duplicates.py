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
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import faiss
import numpy as np
from PIL import Image, ImageEnhance

from _common import begin_run, run, write_result
from crossmodal.collection.collection import Collection
from crossmodal.collection.duplicates import (
    group_positions,
    hash_pairs,
    item_hashes,
    similar_pairs,
)
from crossmodal.models.duplicate_thresholds import HASH_DISTANCE, write_threshold

RESULTS = Path(__file__).resolve().parents[1] / "results"
CALIBRATION_PRECISION = 0.98
HASH_PRECISION = 0.99  # perceptual hashes alone, on train: the largest distance keeping it
MAX_BITS = 16
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


def kept_set(args: argparse.Namespace, split: str, folder: Path, seed: int) -> dict:
    """The set in `folder`, built unless a run with the same arguments left it there."""
    record = folder.parent / f"{folder.name}-source.json"
    wanted = [args.photos, args.edited, args.copies, seed]
    if record.is_file():
        kept = json.loads(record.read_text(encoding="utf-8"))
        if kept["args"] != wanted:
            raise SystemExit(f"{folder} holds a set made with other arguments: remove it")
        return kept["source"]
    source = build_set(args.data, split, folder, args.photos, args.edited, args.copies, seed)
    record.write_text(json.dumps({"args": wanted, "source": source}), encoding="utf-8")
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


def calibrate(curve: list[dict], key: str = "threshold", target: float = 0.98,
              upward: bool = False) -> float:
    """The grid value furthest from strict (lowest threshold, or with `upward` the largest
    hash distance) up to which precision stays >= `target`, coming from the strict end."""
    chosen = None
    for row in (curve if upward else reversed(curve)):
        if row["precision"] is not None and row["precision"] < target:
            break
        chosen = row[key]
    if chosen is None:
        raise SystemExit(f"no {key} reaches precision {target}")
    return chosen


def pairs_of(index: Path) -> tuple[list[dict], list[str], tuple, tuple]:
    """Items, ids, vector pairs >= FLOOR, perceptual-hash pairs <= MAX_BITS apart."""
    collection = Collection.open(index)
    ids = [item["id"] for item in collection.items]
    hashed = hash_pairs(item_hashes(collection.items), MAX_BITS)
    return collection.items, ids, similar_pairs(collection.images, FLOOR), hashed


def within(hashed: tuple | None, bits: int) -> tuple | None:
    return None if hashed is None else tuple(a[hashed[2] <= bits] for a in hashed)


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


def measure(d: dict, pairs: dict, hashed: dict | None, bits: int | None) -> dict:
    """Threshold chosen on train, scored on val; `hashed` pairs (within `bits`) link too."""
    def scored(split: str, t: float) -> dict:
        links = within(hashed[split], bits) if hashed else None
        return score(group_positions(d["items"][split], pairs[split], t, links),
                     d["sources"][split], d["ids"][split])

    train_curve = [{"threshold": float(t), **scored("train", t)} for t in GRID]
    threshold = calibrate(train_curve, target=CALIBRATION_PRECISION)
    nearby = [{"threshold": t, **{k: v for k, v in scored("val", t).items()
                                  if k in ("precision", "recall")}}
              for t in sorted({round(threshold + x, 4) for x in (-0.03, -0.01, 0, 0.01, 0.03)})]
    calib = next(r for r in train_curve if r["threshold"] == threshold)
    return {"threshold": threshold, "hash_distance": bits, "train_at_threshold": calib,
            "val": scored("val", threshold), "val_near_threshold": nearby}


def choose_bits(d: dict, pairs: dict, hashed: dict) -> tuple[int, dict]:
    """The hash distance (perceptual hashes alone, no vector links) chosen on train; its
    curve on train and its scores on val."""
    def scored(split: str, bits: int) -> dict:
        return score(group_positions(d["items"][split], pairs[split], 2.0,
                                     within(hashed[split], bits)),
                     d["sources"][split], d["ids"][split])

    curve = [{"bits": b, **scored("train", b)} for b in range(MAX_BITS + 1)]
    bits = calibrate(curve, "bits", HASH_PRECISION, upward=True)
    return bits, {"hash_distance": bits, "train": next(r for r in curve if r["bits"] == bits),
                  "val": scored("val", bits),
                  "train_curve": [{k: r[k] for k in ("bits", "precision", "recall")}
                                  for r in curve]}


def run_model(model: str, sets: dict, work: Path) -> dict:
    d: dict = {"items": {}, "ids": {}, "sources": {}}
    pairs, hashed, vectors = {}, {}, {}
    index_of = {split: work / f"index-{model.replace(':', '_')}-{split}" for split in sets}
    with ThreadPoolExecutor(len(sets)) as pool:  # both sets at once (wall time overlaps)
        timed = {split: pool.submit(index_set, sets[split][0], model, index_of[split])
                 for split in sets}
        seconds = {split: round(job.result(), 1) for split, job in timed.items()}
    for split, (_, source) in sets.items():
        index = index_of[split]
        d["items"][split], d["ids"][split], pairs[split], hashed[split] = pairs_of(index)
        d["sources"][split] = [source[i] for i in d["ids"][split]]
        vectors[split] = Collection.open(index).images.get_vectors(
            np.arange(len(d["ids"][split])))
    bits, hash_only = choose_bits(d, pairs, hashed)
    result = {"model": model, "index_seconds": seconds,
              "images": {s: len(v) for s, v in d["ids"].items()},
              **measure(d, pairs, hashed, bits),
              "vectors_only": measure(d, pairs, None, None), "hash_only": hash_only}
    members = {}
    for name, part in member_slices(model):
        sliced = {s: v[:, part] / np.linalg.norm(v[:, part], axis=1, keepdims=True)
                  for s, v in vectors.items()}
        members[name] = measure(d, {s: dense_pairs(sliced[s]) for s in sliced}, None, None)
    if members:
        result["member_slices"] = members
    fingerprint = Collection.open(work / f"index-{model.replace(':', '_')}-val") \
        .manifest.model_fingerprint
    return {**result, "fingerprint": fingerprint}


def table(results: list[dict]) -> str:
    lines = [f"{'model / vectors':<44} {'thr':>6} {'bits':>4} {'P':>6} {'R':>6} "
             f"{'exact':>6}  recall per edit"]
    for r in results:
        rows = [(r["model"] + " (default: vectors + hash)", r),
                ("  vectors only", r["vectors_only"]), ("  hash only", r["hash_only"])]
        rows += [(f"  {name} part, vectors only", m)
                 for name, m in r.get("member_slices", {}).items()]
        for name, m in rows:
            v = m["val"]
            edits = " ".join(f"{e}={x:.2f}" for e, x in v["recall_per_edit"].items())
            thr = f"{m['threshold']:>6.4f}" if "threshold" in m else f"{'-':>6}"
            bits = m.get("hash_distance")
            lines.append(f"{name:<44} {thr} {bits if bits is not None else '-':>4} "
                         f"{v['precision']:>6.3f} {v['recall']:>6.3f} "
                         f"{v['photos_grouped_exactly']:>6.3f}  {edits}")
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
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the sets and indexes here (a rerun reuses them)")
    args = parser.parse_args()
    envelope = begin_run()
    # One thread for faiss here and for the indexing (CROSSMODAL_THREADS): on a shared
    # machine, OpenMP pools spinning against other processes ran 40x slower.
    faiss.omp_set_num_threads(1)
    os.environ.setdefault("CROSSMODAL_THREADS", "1")
    models = args.model or ["fusion:bilingual"]
    with tempfile.TemporaryDirectory(prefix="crossmodal-dupes-") as tmp:
        work = args.work or Path(tmp)
        sets = {}
        for split, seed in (("train", args.seed), ("val", args.seed + 1)):
            sets[split] = (work / split, kept_set(args, split, work / split, seed))
        results = []
        for model in models:  # the file is written after each model: a long run keeps some
            results.append(run_model(model, sets, work))
            finish(args, results, envelope)


def finish(args: argparse.Namespace, results: list[dict], envelope: dict) -> None:
    print(table(results))
    for r in results:
        if r["hash_distance"] != HASH_DISTANCE:
            print(f"note: train chose hash distance {r['hash_distance']} for {r['model']}; "
                  f"the library's HASH_DISTANCE is {HASH_DISTANCE}")
    if args.write_package_data:
        r = results[-1]
        write_threshold(r["model"], r["fingerprint"], r["threshold"],
                        f"flickr8k-cn train, {args.photos} photos, {args.edited} with "
                        f"{args.copies} edited copies; precision >= {CALIBRATION_PRECISION} "
                        f"with perceptual hashes within {r['hash_distance']} bits")
    payload = {"set": {"photos": args.photos, "edited": args.edited, "copies": args.copies,
                       "edits": sorted(EDITS), "seed": args.seed,
                       "calibration_precision": CALIBRATION_PRECISION,
                       "hash_precision": HASH_PRECISION},
               "models": results}
    print("wrote", write_result(args.out, payload, envelope), flush=True)

if __name__ == "__main__":
    main()
