"""Which MatMuls of a towers model's int8 text graph stay fp32: chosen on Flickr8k *train*.

Each weight MatMul is quantised alone (the export's per-row int8, or `--scheme per_batch`:
ONNX Runtime's dynamic int8 with one scale per batch tensor, the previous export) and its
error is measured where it matters, on the embedding: mean (1 - cosine) to the fp32 graph
over captions of the last 1,000 train images (never val). Errors of several nodes add up (on
lite-en the errors alone sum to 0.0079; all quantised together measured 0.0082). MatMuls are
kept fp32 by error per multiply-add, greedily, within the multiply-adds the previous rule kept
fp32 (the last FP32_TAIL_MATMULS nodes), so int8 costs no more time than before.

    python tools/onnx_int8_sensitivity.py --model towers:lite-en --write
    python tools/onnx_int8_sensitivity.py --model towers:lite-en --budget-scale 2.4 --write
    python tools/onnx_int8_sensitivity.py --model towers:lite-en --scheme per_batch
    python tools/onnx_int8_sensitivity.py --model towers:lite-en --budget-scale 2.4 \
        --smoothing --write

--smoothing first measures each MatMul's input range per channel on other train captions
(the first --calibration captions of the first train images, one caption a run: no padding)
and smooths the inputs (per_row_int8.py's SmoothQuant) before the errors are measured; --write
then ships those ranges too (WEIGHTS.int8.ranges.safetensors).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # _common

import numpy as np
import onnx

from _common import begin_run, write_result
from crossmodal.data.flickr8k_cn import load_flickr8k_cn
from crossmodal.models.onnx.calibrate import matmul_input_absmax
from crossmodal.models.onnx.export import export_encoder
from crossmodal.models.onnx.per_row_int8 import SMOOTHING_ALPHA
from crossmodal.models.onnx.quantize import (
    FP32_TAIL_MATMULS,
    TEXT_INT8,
    prepared_for_quantization,
    rewrite_text_int8,
    weight_matmuls,
)
from crossmodal.models.onnx.runtime import OnnxEncoder
from crossmodal.models.registry import load_encoder

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def embedding_error(folder: Path, captions: list[str], reference: np.ndarray) -> float:
    vectors = OnnxEncoder(folder).encode_texts(captions)
    return float((1.0 - (vectors * reference).sum(1)).mean())


def errors_alone(prepared: Path, folder: Path, macs: dict[str, int], scheme: str,
                 ranges: dict | None, captions: list[str], reference: np.ndarray
                 ) -> dict[str, float]:
    """Each weight MatMul quantised alone: its embedding error."""
    errors = {}
    for name in macs:
        rewrite_text_int8(prepared, folder / "text.onnx", scheme, ranges, only=[name])
        errors[name] = embedding_error(folder, captions, reference)
        print(f"{errors[name]:.6f} {macs[name]:>8} {name}", flush=True)
    return errors


def greedy_fp32(errors: dict[str, float], macs: dict[str, int], budget: int) -> list[str]:
    """Most error per multiply-add first; skip what does not fit, go on with smaller ones."""
    chosen, used = [], 0
    for name in sorted(errors, key=lambda n: -errors[n] / max(macs[n], 1)):
        if errors[name] > 0 and used + macs[name] <= budget:
            chosen.append(name)
            used += macs[name]
    return chosen


def main() -> None:
    envelope = begin_run()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="towers:lite-en")
    parser.add_argument("--data", default="/work/shared/data/flickr8k-cn")
    parser.add_argument("--language", default="en")
    parser.add_argument("--captions", type=int, default=2000)
    parser.add_argument("--budget-scale", type=float, default=1.0,
                        help="fp32 multiply-adds allowed, as a multiple of the previous rule's")
    parser.add_argument("--scheme", choices=sorted(TEXT_INT8), default="per_row",
                        help="activation scales: per row (token), as exported, or per batch")
    parser.add_argument("--smoothing", action="store_true",
                        help="smooth MatMul inputs by ranges calibrated on other train captions")
    parser.add_argument("--calibration", type=int, default=1000,
                        help="captions the input ranges are measured on (--smoothing)")
    parser.add_argument("--write", action="store_true",
                        help="write the choice beside the model's head weights (WEIGHTS.int8.json)")
    args = parser.parse_args()

    train = load_flickr8k_cn(args.data, "train", args.language)
    held = train.subset(list(range(len(train.images) - 1000, len(train.images))))
    captions = list(held.texts[: args.captions])
    encoder = load_encoder(args.model)
    work = Path(tempfile.mkdtemp(prefix="crossmodal-int8-sensitivity-"))
    export_encoder(encoder, work / "fp32")
    reference = OnnxEncoder(work / "fp32").encode_texts(captions)
    prepared = prepared_for_quantization(work / "fp32" / "text.onnx", work)
    graph = onnx.load(str(prepared)).graph
    macs = weight_matmuls(graph)
    tail = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")][-FP32_TAIL_MATMULS:]
    budget = int(args.budget_scale * sum(macs.get(name, 0) for name in tail))
    ranges = None
    if args.smoothing:
        if args.scheme != "per_row":
            parser.error("--smoothing is only implemented for --scheme per_row")
        calibration = list(train.texts[: args.calibration])  # the first train images
        onnx_encoder = OnnxEncoder(work / "fp32")
        ranges = matmul_input_absmax(
            prepared, (onnx_encoder.text_feed([text]) for text in calibration))
    errors = errors_alone(prepared, work / "fp32", macs, args.scheme, ranges, captions, reference)
    chosen = greedy_fp32(errors, macs, budget)
    print(f"keep fp32 ({sum(macs[n] for n in chosen)} of {sum(macs.values())} multiply-adds; "
          f"previous rule {budget}):", *chosen, sep="\n  ")
    rewrite_text_int8(prepared, work / "fp32" / "text.onnx", args.scheme, ranges, exclude=chosen)
    measured = embedding_error(work / "fp32", captions, reference)  # all together
    print(f"measured error, the choice quantised together: {measured:.6f}")
    smoothing = f", inputs smoothed (alpha {SMOOTHING_ALPHA})" if ranges else ""
    chosen_on = (f"{len(captions)} Flickr8k train captions (last 1,000 train images), "
                 f"{args.scheme.replace('_', '-')} int8{smoothing}, budget {args.budget_scale}x, "
                 "tools/onnx_int8_sensitivity.py")
    result = {"model": args.model, "captions": len(captions), "chosen_on": chosen_on,
              "scheme": args.scheme, "smoothing": bool(ranges),
              "budget_scale": args.budget_scale,
              "budget_macs": budget, "previous_rule": tail,
              "error_alone": errors, "macs": macs, "text_fp32_matmuls": chosen,
              "predicted_error": predicted_errors(errors, tail, chosen),
              "measured_error_chosen": measured}
    stem = args.model.split(":")[-1]
    suffix = ("" if args.scheme == "per_row" else f"_{args.scheme}") + ("_smoothed" * bool(ranges))
    RESULTS.mkdir(exist_ok=True)
    write_result((RESULTS / f"onnx_int8_sensitivity_{stem}{suffix}.json"), result, envelope)
    if args.write:
        write_choice(encoder.config.weights_path, chosen, chosen_on, ranges, args.calibration)


def predicted_errors(errors: dict[str, float], tail: list[str], chosen: list[str]) -> dict:
    """Errors alone add up: the sum over what is left int8 under each rule."""
    total = sum(errors.values())
    return {"all_int8": total, "previous_rule": total - sum(errors.get(n, 0) for n in tail),
            "chosen": total - sum(errors[n] for n in chosen)}


def write_choice(weights: Path, chosen: list[str], chosen_on: str, ranges: dict | None,
                 calibration: int) -> None:
    """WEIGHTS.int8.json (and WEIGHTS.int8.ranges.safetensors with --smoothing)."""
    from safetensors.numpy import save_file

    choice = {"text_fp32_matmuls": chosen, "chosen_on": chosen_on}
    if ranges:
        target = weights.with_suffix(".int8.ranges.safetensors")
        save_file({name: np.ascontiguousarray(v) for name, v in ranges.items()}, str(target))
        choice["input_ranges"] = {
            "file": target.name,
            "calibrated_on": f"{calibration} Flickr8k train captions (the first train images), "
                             "one caption a run, tools/onnx_int8_sensitivity.py"}
        print(f"wrote {target}")
    target = weights.with_suffix(".int8.json")
    target.write_text(json.dumps(choice, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
