"""What reading photos' EXIF at index time costs: `read_photo_info` alone, and `crossmodal
index` (Collection.add_paths) with and without it, on real JPEGs.

The photos: the first `--n` Flickr8k-CN JPEGs as they are (they carry no EXIF: the cost of
looking), and the same photos re-saved into a temporary folder with a phone-like EXIF block
(date, camera, GPS, orientation: the cost of reading one). Indexing runs with a tiny colour
encoder (`--model tiny`: the worst case, where decoding and hashing are all the work and EXIF
weighs most) or a real model (`--model towers:lite-en`, what a user runs). "without" is the
same run with the EXIF reader replaced by one that returns nothing. Runs alternate with and
without, `--reps` times each, and report medians: on a shared machine the load drifts.

    python benchmarks/suite/exif_speed.py --n 200 --reps 5
    python benchmarks/suite/exif_speed.py --n 200 --reps 1 --model towers:lite-en \
        --out exif_speed_model
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np
from PIL import Image

from _common import begin_run, write_result  # noqa: E402
from crossmodal.collection import ingest  # noqa: E402
from crossmodal.data.exif import read_photo_info  # noqa: E402
from crossmodal.engine import Collection  # noqa: E402
from crossmodal.models.protocol import ImagePreprocessing  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
IMAGES = Path("/work/shared/data/flickr8k-cn/images")


class TinyEncoder:
    """Each photo's mean colour as its vector: encoding costs next to nothing."""

    model_id, fingerprint, dim, context_length = "bench:tiny", "bench-tiny", 8, 77
    preprocessing = ImagePreprocessing(size=224, mean=(0.0,) * 3, std=(1.0,) * 3)

    def encode_images(self, images) -> np.ndarray:
        out = np.zeros((len(images), self.dim), np.float32)
        for row, image in enumerate(images):
            out[row, :3] = np.asarray(image.resize((8, 8)), np.float32).mean((0, 1)) + 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_texts(self, texts) -> np.ndarray:
        return np.ones((len(texts), self.dim), np.float32) / np.sqrt(self.dim)

    def text_lengths(self, texts) -> list[int]:
        return [1 for _ in texts]


def with_exif(sources: list[Path], folder: Path) -> list[Path]:
    """`sources` re-saved (same quantisation tables) with a phone-like EXIF block."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Apple", "iPhone 13", 6
    exif[0x0132] = "2024:06:01 14:03:22"
    exif.get_ifd(0x8769)[0x9003] = "2024:06:01 14:03:22"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 30.2), "E", (2.0, 17.0, 40.2)
    out = []
    for source in sources:
        with Image.open(source) as image:
            target = folder / source.name
            image.save(target, quality="keep", exif=exif.tobytes())
            out.append(target)
    return out


def read_rate(paths: list[Path]) -> float:
    started = time.perf_counter()
    found = [read_photo_info(p) for p in paths]
    elapsed = time.perf_counter() - started
    assert all("width" in info for info in found)
    return len(paths) / elapsed


def index_rate(folder: Path, model: str, exif: bool, work: Path, encoder) -> float:
    reader = ingest.read_photo_info
    if not exif:
        ingest.read_photo_info = lambda path: {}
    try:
        index = Path(tempfile.mkdtemp(dir=work)) / "index"
        collection = (Collection.create(index, encoder=encoder) if model == "tiny"
                      else Collection.create(index, model=model, encoder=encoder))
        started = time.perf_counter()
        report = collection.add_paths([folder], progress=False)
        elapsed = time.perf_counter() - started
        collection.close()
    finally:
        ingest.read_photo_info = reader
    has_photo = sum("taken" in item.get("photo", {}) for item in collection.items)
    assert report.added == len(list(folder.iterdir())) and (has_photo > 0) == (
        exif and "exif" in folder.name)
    return report.added / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--model", default="tiny", help="tiny, or a model id")
    parser.add_argument("--out", default="exif_speed")
    args = parser.parse_args()
    envelope = begin_run()
    sources = sorted(IMAGES.glob("*.jpg"))[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain_folder, exif_folder = work / "plain", work / "with-exif"
        plain_folder.mkdir()
        exif_folder.mkdir()
        for source in sources:  # the originals, linked: the same bytes, no EXIF
            (plain_folder / source.name).symlink_to(source)
        with_exif(sources, exif_folder)
        if args.model == "tiny":
            encoder = TinyEncoder()
        else:
            from crossmodal.models.registry import load_encoder

            encoder = load_encoder(args.model)
            warm = work / "warm-up"  # the first use exports and loads the model's graphs
            warm.mkdir()
            for source in sources[:8]:
                (warm / source.name).symlink_to(source)
            index_rate(warm, args.model, False, work, encoder)
        rows = []
        for label, folder in (("no EXIF (Flickr8k as is)", plain_folder),
                              ("phone EXIF (re-saved)", exif_folder)):
            paths = sorted(folder.iterdir())
            reads = [read_rate(paths) for _ in range(args.reps)]
            runs: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.reps):
                for exif in (False, True):
                    runs[exif].append(index_rate(folder, args.model, exif, work, encoder))
                    print(f"{label}, EXIF {'on' if exif else 'off'}: {runs[exif][-1]:.1f}/s",
                          file=sys.stderr, flush=True)
            without, with_ = statistics.median(runs[False]), statistics.median(runs[True])
            rows.append({"photos": label, "n": len(paths),
                         "read_photo_info_per_s": round(statistics.median(reads), 1),
                         "index_per_s_without": round(without, 2),
                         "index_per_s_with": round(with_, 2),
                         "slowdown_pct": round(100 * (without - with_) / without, 1),
                         "runs_without": [round(r, 2) for r in runs[False]],
                         "runs_with": [round(r, 2) for r in runs[True]]})
    print(f"model: {args.model}; {args.reps} runs each, medians")
    print(f"{'photos':<26} {'n':>4} {'EXIF reads/s':>13} {'index/s w/o':>12} "
          f"{'index/s with':>13} {'slowdown':>9}")
    for row in rows:
        print(f"{row['photos']:<26} {row['n']:>4} {row['read_photo_info_per_s']:>13,.0f} "
              f"{row['index_per_s_without']:>12.1f} {row['index_per_s_with']:>13.1f} "
              f"{row['slowdown_pct']:>8.1f}%")
    path = write_result(RESULTS / f"{args.out}.json", {"model": args.model, "reps": args.reps,
                                                       "rows": rows}, envelope)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
