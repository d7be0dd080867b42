"""Backbone feature caching for fine-tuning against indexing, on the same photos and captions.

Three ways over the same N photos (decoded the same way, by `encode_image_sources` with the
model's target size): indexing (`encode_images` of the registry's towers: model, ONNX
Runtime), training's features before (the PyTorch backbone, `TowersEncoder.image_features`),
and training's features now (`train.fast_features`: the backbone exported for ONNX Runtime).
Captions likewise: indexing's `encode_texts` (its text runtime for this CPU), training's
PyTorch text backbone (bf16 where the CPU has it) and training's ONNX Runtime fp32 path.
Rounds are interleaved so that load changes hit every way alike; each way's first call
(exports, sessions) is warm-up and not timed.

    python benchmarks/suite/finetune_speed.py --data /work/shared/data/flickr8k-cn
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import RESULTS, begin_run, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.data.loader import encode_image_sources, encode_text_batches
from crossmodal.models.registry import load_encoder
from crossmodal.models.towers import TowersEncoder, find_tower_config
from crossmodal.threads import thread_count
from crossmodal.train.fast_features import onnx_image_features, onnx_text_features


def ways(tower: str) -> dict:
    indexing = load_encoder(f"towers:{tower}")
    torch_encoder = TowersEncoder(find_tower_config(tower))
    fast = onnx_image_features(torch_encoder)
    if fast is None:
        raise SystemExit("ONNX Runtime cannot run the backbone here: nothing to compare")
    return {"indexing encode_images (ONNX Runtime)": indexing.encode_images,
            "training features before (PyTorch)": lambda images:
                torch_encoder.image_features(images).reshape(len(images), -1).numpy(),
            "training features now (ONNX Runtime)": lambda images:
                fast(images).reshape(len(images), -1)}, torch_encoder.preprocessing.size


def text_ways(tower: str) -> dict:
    indexing = load_encoder(f"towers:{tower}")
    torch_encoder = TowersEncoder(find_tower_config(tower))
    fast = onnx_text_features(torch_encoder)
    ways = {"indexing encode_texts": indexing.encode_texts,
            "training text features before (PyTorch)": lambda texts:
                torch_encoder.text_features(texts).numpy()}
    if fast is not None:
        ways["training text features now (ONNX Runtime fp32)"] = fast
    return ways


def measure(functions: dict, run, count: int, rounds: int) -> list[dict]:
    """Per way: items/s per round (interleaved), median and best."""
    rates: dict[str, list[float]] = {name: [] for name in functions}
    for function in functions.values():  # warm-up: exports, sessions, traces
        run(function, warm=True)
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            run(function, warm=False)
            rates[name].append(count / (time.perf_counter() - start))
    rows = [{"way": name, "per_s_median": round(statistics.median(r), 1),
             "per_s_best": round(max(r), 1), "rounds": [round(x, 1) for x in r]}
            for name, r in rates.items()]
    first = rows[0]["per_s_median"]
    print(f"{'way':<48} {'per s median':>13} {'best':>7} {'x indexing':>11}")
    for row in rows:
        row["vs_indexing"] = round(row["per_s_median"] / first, 2)
        print(f"{row['way']:<48} {row['per_s_median']:>13} {row['per_s_best']:>7} "
              f"{row['vs_indexing']:>11}")
    return rows


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/flickr8k-cn")
    parser.add_argument("--tower", default="lite-en")
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--captions", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "finetune_speed.json")
    args = parser.parse_args()
    train = load_flickr8k_cn(args.data, "train", "en")
    photos, captions = train.images[: args.photos], train.texts[: args.captions]
    functions, size = ways(args.tower)
    images = measure(functions, lambda f, warm: encode_image_sources(
        photos[:8] if warm else photos, f, 32, size, progress=False), len(photos), args.rounds)
    texts = measure(text_ways(args.tower), lambda f, warm: encode_text_batches(
        captions[:32] if warm else captions, f, 256, progress=False),
        len(captions), args.rounds)
    payload = {"tower": args.tower, "photos": len(photos), "captions": len(captions),
               "threads": thread_count(), "rounds": args.rounds,
               "images_per_s": images, "captions_per_s": texts}
    print("wrote", write_result(args.out, payload, envelope))


if __name__ == "__main__":
    main()
