"""Embedding throughput of an encoder on this machine, end to end from JPEG files on disk.

images/s: read + decode (background threads) + preprocess + encode, over Flickr8k val photos.
captions/s: tokenize + encode of Flickr8k val captions, in batches as `crossmodal index` does.

    python benchmarks/suite/embed_throughput.py --model towers:lite-en \
        --data ../shared/data/flickr8k-cn
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import begin_run, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.data.loader import iter_image_batches
from crossmodal.models.registry import load_encoder

RESULTS = Path(__file__).resolve().parents[1] / "results"


def image_rate(encoder, paths, batch_size: int) -> float:
    start = time.perf_counter()
    done = 0
    for _, images, _ in iter_image_batches(paths, batch_size,
                                           target_size=encoder.preprocessing.size):
        encoder.encode_images(images)
        done += len(images)
    return done / (time.perf_counter() - start)


def text_rate(encoder, texts, batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        encoder.encode_texts(texts[i : i + batch_size])
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--data", default="../shared/data/flickr8k-cn")
    parser.add_argument("--language", default="en", choices=["en", "zh"])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--captions", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--text-batch-size", type=int, default=256)
    args = parser.parse_args()

    data = load_flickr8k_cn(args.data, "val", args.language)
    encoder = load_encoder(args.model)
    encoder.encode_texts(data.texts[:64])  # warm-up: first calls allocate and pick kernels
    image_rate(encoder, data.images[:32], args.batch_size)
    images = image_rate(encoder, data.images[: args.images], args.batch_size)
    captions = text_rate(encoder, data.texts[: args.captions], args.text_batch_size)
    result = {"model": args.model, "images_per_s": round(images, 1),
              "captions_per_s": round(captions, 1), "images": args.images,
              "captions": args.captions, "language": args.language}
    print(f"{'model':<18} {'images/s':>9} {'captions/s':>11}")
    print(f"{args.model:<18} {images:>9.1f} {captions:>11.1f}")
    RESULTS.mkdir(exist_ok=True)
    name = f"embed_throughput_{args.model.replace(':', '_').replace('/', '_')}.json"
    write_result((RESULTS / name), result, envelope)


if __name__ == "__main__":
    main()
