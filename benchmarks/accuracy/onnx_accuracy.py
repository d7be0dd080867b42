"""Flickr8k val R@1 (both directions) of a model run by PyTorch vs ONNX fp32 vs ONNX int8.

Exports the model (fp32, then int8 with each image quantisation mode), evaluates every variant
with crossmodal.evaluation (full val: ~1000 images, ~5000 captions) and reports R@1 deltas and
the row cosine of each variant's embeddings to PyTorch's.

    python benchmarks/accuracy/onnx_accuracy.py --model towers:lite-en --language en
    python benchmarks/accuracy/onnx_accuracy.py --model towers:lite-zh --language zh
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # _common

import numpy as np
import onnx

from _common import begin_run, row_cosines, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.data.images import load_image
from crossmodal.evaluation.embed import embed_dataset
from crossmodal.evaluation.run import evaluate_model
from crossmodal.metrics.evaluate import evaluate_pairs
from crossmodal.models.onnx.export import export_encoder
from crossmodal.models.onnx.manifest import MANIFEST_NAME, read_manifest
from crossmodal.models.onnx.quantize import (
    FP32_TAIL_MATMULS,
    TEXT_SCHEMES,
    per_batch_int8,
    prepared_for_quantization,
)
from crossmodal.models.registry import load_encoder
from crossmodal.paths import file_sha256

RESULTS = Path(__file__).resolve().parents[1] / "results"


def per_batch_variant(int8: Path, fp32_text: Path, target: Path, old_rule: bool) -> Path:
    """A copy of the int8 export whose text graph has ONNX Runtime's per-batch activation
    scales (as exports before per-row int8), with the model's fp32 list or, `old_rule`, the
    last 7 MatMul nodes (but the head) fp32 as the oldest exports; its manifest says so (so
    its fingerprint and embedding cache differ)."""
    shutil.copytree(int8, target, dirs_exist_ok=True)
    manifest = json.loads((target / MANIFEST_NAME).read_text(encoding="utf-8"))
    kept = manifest["text"]["fp32_matmuls"]
    with tempfile.TemporaryDirectory() as scratch:
        prepared = prepared_for_quantization(fp32_text, Path(scratch))
        if old_rule:
            nodes = [node for node in onnx.load(str(prepared)).graph.node
                     if node.op_type in ("MatMul", "Gemm")][-FP32_TAIL_MATMULS:]
            # as the old exports were: the head Gemm in that tail was quantised all the same
            kept = [node.name for node in nodes if node.op_type == "MatMul"]
            manifest["text"]["fp32_matmuls_chosen"] = "the last 7 MatMul nodes"
        per_batch_int8(prepared, target / "text.onnx", exclude=kept)
    manifest["text"].update(fp32_matmuls=kept, quantization=TEXT_SCHEMES["per_batch"])
    manifest["text"].pop("smoothing", None)  # per-batch int8 runs unsmoothed
    manifest["files"]["text.onnx"] = file_sha256(target / "text.onnx")
    (target / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return target


def batching_runs(encoder, data, images: np.ndarray, runs: int) -> list[tuple[float, float]]:
    """(i2t, t2i) R@1 with the captions sent in random batches of 256 (as `crossmodal index`
    sends them), one seeded order per run: per-batch int8 scales activations per batch, so its
    vectors, and R@1, move with how captions are batched (per-row int8's do not)."""
    rates = []
    for seed in range(runs):
        order = np.random.default_rng(seed).permutation(len(data.texts))
        texts = np.empty((len(data.texts), encoder.dim), np.float32)
        for start in range(0, len(order), 256):
            rows = order[start : start + 256]
            texts[rows] = encoder.encode_texts([data.texts[i] for i in rows])
        report = evaluate_pairs(images, texts, data.text_images)
        rates.append((report["image_to_text"]["R@1"], report["text_to_image"]["R@1"]))
    return rates


def spread(rates: list[tuple[float, float]], base: dict) -> dict:
    deltas = np.array(rates) - np.array([base["i2t_R@1"], base["t2i_R@1"]])
    return {"runs": len(rates), "delta_i2t": [round(d, 2) for d in deltas[:, 0]],
            "delta_t2i": [round(d, 2) for d in deltas[:, 1]],
            "mean_delta_i2t": round(float(deltas[:, 0].mean()), 2),
            "mean_delta_t2i": round(float(deltas[:, 1].mean()), 2)}


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--data", default="/work/shared/data/flickr8k-cn")
    parser.add_argument("--language", default="en", choices=["en", "zh"])
    parser.add_argument("--calibration", type=int, default=64,
                        help="Flickr8k *train* images calibrating static int8 (never val)")
    parser.add_argument("--image-int8", default="none,static,dynamic",
                        help="image quantisation modes to try, comma-separated")
    parser.add_argument("--exports", type=Path, default=None,
                        help="folder for the exports (default: a temporary folder)")
    parser.add_argument("--old-fp32-rule", action="store_true",
                        help="also score the per-batch int8 text graph made by the previous "
                             "fp32 rule (the last 7 MatMul nodes) instead of the model's list")
    parser.add_argument("--per-batch", action="store_true",
                        help="also score the int8 text graph with ONNX Runtime's per-batch "
                             "activation scales (the previous export) and the model's list")
    parser.add_argument("--out", type=Path, default=None, help="JSON to write")
    parser.add_argument("--batchings", type=int, default=0,
                        help="also score each int8 variant under N random caption batchings")
    parser.add_argument("--skip-torch", action="store_true",
                        help="no PyTorch row: deltas are to ONNX fp32 (faster on a busy machine)")
    args = parser.parse_args()

    data = load_flickr8k_cn(args.data, "val", args.language)
    train = load_flickr8k_cn(args.data, "train", args.language)
    calibration = [load_image(p, target_size=224) for p in train.images[: args.calibration]]
    exports = args.exports or Path(tempfile.mkdtemp(prefix="crossmodal-onnx-"))
    torch_encoder = load_encoder(args.model)
    variants = {} if args.skip_torch else {"torch": args.model}
    stem = args.model.split(":")[-1]
    export_encoder(torch_encoder, exports / f"{stem}-fp32", overwrite=True)
    variants["onnx fp32"] = f"onnx:{exports / f'{stem}-fp32'}"
    for mode in args.image_int8.split(","):
        folder = exports / f"{stem}-int8-{mode}"
        export_encoder(torch_encoder, folder, int8=True, image_int8=mode,
                       calibration=calibration, overwrite=True)
        variants[f"onnx int8 ({mode} image)"] = f"onnx:{folder}"
    first = exports / f"{stem}-int8-{args.image_int8.split(',')[0]}"
    fp32_text = exports / f"{stem}-fp32" / "text.onnx"
    if args.per_batch:  # the first int8 export, its text graph with per-batch scales
        folder = per_batch_variant(first, fp32_text, exports / f"{stem}-int8-per-batch", False)
        variants["onnx int8 (per-batch text)"] = f"onnx:{folder}"
    if args.old_fp32_rule:  # ... and by the old fp32 rule
        folder = per_batch_variant(first, fp32_text, exports / f"{stem}-int8-old-rule", True)
        variants["onnx int8 (old fp32 rule)"] = f"onnx:{folder}"

    rows, reference = [], None
    to_reference = "to_onnx_fp32" if args.skip_torch else "to_torch"
    for name, model_id in variants.items():
        encoder = load_encoder(model_id)
        embeddings = embed_dataset(encoder, data, progress=True)
        report = evaluate_model(encoder, data, progress=False)  # reuses the cached embeddings
        row = {"variant": name, "model": model_id.split("/")[-1] if "onnx:" in model_id
               else model_id, "i2t_R@1": report["image_to_text"]["R@1"],
               "t2i_R@1": report["text_to_image"]["R@1"], "rsum": report["rsum"]}
        if reference is None:
            reference = embeddings
        else:
            row[f"image_cosine_{to_reference}"] = row_cosines(embeddings.images, reference.images)
            row[f"text_cosine_{to_reference}"] = row_cosines(embeddings.texts, reference.texts)
        if args.batchings and name.startswith("onnx int8"):
            row["batching_R@1"] = batching_runs(encoder, data, embeddings.images, args.batchings)
        rows.append(row)

    base = rows[0]
    print(f"{'variant':<26} {'i2t R@1':>8} {'Δ':>6} {'t2i R@1':>8} {'Δ':>6} "
          f"{'img cos min':>11} {'txt cos min':>11}")
    for row in rows:
        row["delta_i2t"] = round(row["i2t_R@1"] - base["i2t_R@1"], 2)
        row["delta_t2i"] = round(row["t2i_R@1"] - base["t2i_R@1"], 2)
        cos_i = row.get(f"image_cosine_{to_reference}", {}).get("min", 1.0)
        cos_t = row.get(f"text_cosine_{to_reference}", {}).get("min", 1.0)
        print(f"{row['variant']:<26} {row['i2t_R@1']:>8.2f} {row['delta_i2t']:>+6.2f} "
              f"{row['t2i_R@1']:>8.2f} {row['delta_t2i']:>+6.2f} {cos_i:>11.5f} {cos_t:>11.5f}")
        if "batching_R@1" in row:
            row["batchings"] = spread(row.pop("batching_R@1"), base)
            print(f"{'  mean of ' + str(args.batchings) + ' batchings':<26} {'':>8} "
                  f"{row['batchings']['mean_delta_i2t']:>+6.2f} {'':>8} "
                  f"{row['batchings']['mean_delta_t2i']:>+6.2f}")
    result = {"model": args.model, "dataset": data.name, "images": len(data.images),
              "captions": len(data.texts), "calibration_train_images": args.calibration,
              "int8_text_fp32_matmuls": read_manifest(first).text.get("fp32_matmuls"),
              "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"onnx_accuracy_{stem}{'_no_torch' if args.skip_torch else ''}.json"
    write_result(out, result, envelope)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
