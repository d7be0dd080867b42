"""Encoding speed of PyTorch vs ONNX Runtime fp32 vs ONNX Runtime int8 on this machine.

images/s: preprocess + encode of decoded Flickr8k val photos (decoding excluded: it is the same
for every variant); captions/s: tokenize + encode of Flickr8k val captions. Batches as
`crossmodal index` sends them (32 images, 256 captions). Variants alternate within each round
and the best round counts, so a busy shared machine penalises all of them alike.

    python benchmarks/suite/onnx_speed.py --model towers:lite-en --language en
    python benchmarks/suite/onnx_speed.py --model towers:lite-zh --language zh
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

from _common import begin_run, write_result
from accuracy.onnx_accuracy import per_batch_variant  # benchmarks/accuracy/
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.data.images import load_image
from crossmodal.models.onnx.export import export_encoder
from crossmodal.models.registry import load_encoder

RESULTS = Path(__file__).resolve().parents[1] / "results"


def rate(encode, items, batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(items), batch_size):
        encode(items[i : i + batch_size])
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--data", default="/work/shared/data/flickr8k-cn")
    parser.add_argument("--language", default="en", choices=["en", "zh"])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--captions", type=int, default=1280)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=64,
                        help="Flickr8k train images calibrating static int8")
    parser.add_argument("--old-fp32-rule", action="store_true",
                        help="also time the int8 text graph made by the previous fp32 rule "
                             "(the last 7 MatMul nodes fp32, per-batch scales) beside the "
                             "model's list")
    parser.add_argument("--per-batch", action="store_true",
                        help="also time the int8 text graph with ONNX Runtime's per-batch "
                             "activation scales (the previous export) and the model's list")
    parser.add_argument("--out", type=Path, default=None, help="JSON to write")
    args = parser.parse_args()

    val = load_flickr8k_cn(args.data, "val", args.language)
    train = load_flickr8k_cn(args.data, "train", args.language)
    images = [load_image(p, target_size=224) for p in val.images[: args.images]]
    captions = val.texts[: args.captions]
    calibration = [load_image(p, target_size=224) for p in train.images[: args.calibration]]
    torch_encoder = load_encoder(args.model)
    exports = Path(tempfile.mkdtemp(prefix="crossmodal-onnx-speed-"))
    export_encoder(torch_encoder, exports / "fp32")
    export_encoder(torch_encoder, exports / "int8", int8=True, image_int8="static",
                   calibration=calibration)  # fastest int8; the default keeps images fp32
    variants = {"torch": torch_encoder, "onnx fp32": load_encoder(f"onnx:{exports / 'fp32'}"),
                "onnx int8": load_encoder(f"onnx:{exports / 'int8'}")}
    fp32_text = exports / "fp32" / "text.onnx"
    if args.per_batch:  # the same export, its text graph with per-batch activation scales
        folder = per_batch_variant(exports / "int8", fp32_text, exports / "int8-batch", False)
        variants["int8 batch"] = load_encoder(f"onnx:{folder}")
    if args.old_fp32_rule:  # ... and by the previous fp32 rule
        folder = per_batch_variant(exports / "int8", fp32_text, exports / "int8-old", True)
        variants["int8 old"] = load_encoder(f"onnx:{folder}")
    for encoder in variants.values():  # warm-up: tracing, kernel choice, allocations
        encoder.encode_images(images[:8])
        encoder.encode_texts(captions[:64])

    best = {name: {"images_per_s": 0.0, "captions_per_s": 0.0} for name in variants}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, encoder in variants.items():
            best[name]["images_per_s"] = max(best[name]["images_per_s"],
                                             rate(encoder.encode_images, images, 32))
            best[name]["captions_per_s"] = max(best[name]["captions_per_s"],
                                               rate(encoder.encode_texts, captions, 256))
    rows = [{"variant": name, **{k: round(v, 1) for k, v in best[name].items()}}
            for name in variants]
    base = rows[0]
    print(f"{'variant':<10} {'images/s':>9} {'×':>5} {'captions/s':>11} {'×':>5}")
    for row in rows:
        row["image_speedup"] = round(row["images_per_s"] / base["images_per_s"], 2)
        row["caption_speedup"] = round(row["captions_per_s"] / base["captions_per_s"], 2)
        print(f"{row['variant']:<10} {row['images_per_s']:>9.1f} {row['image_speedup']:>5.2f} "
              f"{row['captions_per_s']:>11.1f} {row['caption_speedup']:>5.2f}")
    result = {"model": args.model, "language": args.language, "images": len(images),
              "captions": len(captions), "rounds": args.rounds, "cpus": os.cpu_count(),
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "int8_image": variants["onnx int8"].manifest.image["quantization"],
              "int8_text_fp32_matmuls": variants["onnx int8"].manifest.text["fp32_matmuls"],
              "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / (f"onnx_speed_{args.model.split(':')[-1]}"
                                 f"{'_int8_rules' if args.old_fp32_rule else ''}.json")
    write_result(out, result, envelope)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
