"""int8 versions of exported graphs with onnxruntime.quantization.

Text (transformer MatMuls, linear heads): weights int8 per channel, activations quantised on
the fly with one scale per token (per_row_int8.py: a caption's vector does not depend on its
batch), except the MatMuls a model's list keeps fp32: those whose int8 error reaches the
embedding most per multiply-add, measured on training captions (on lite-en: the head, FFN
down-projections, late value projections). Where the model ships input ranges calibrated on
training captions, each MatMul's input is smoothed first (SmoothQuant, per_row_int8.py).
ONNX Runtime's own dynamic int8 (one scale per batch tensor) stays here as `per_batch_int8`
for comparison. Static QDQ text (activation ranges calibrated on train captions) was 8x
worse than per-batch dynamic on lite-en: one range per tensor for all captions is wider than
each batch's own. Images (a conv net): either dynamic (ConvInteger) or static QDQ with per-
channel weights and activation ranges calibrated on a few real images.

int8 weights are 7-bit (reduce_range, in [-64, 64]) so one export is exact on every x86-64 CPU.
On CPUs without VNNI (AVX2 only) ONNX Runtime multiplies uint8 activations by int8 weights
with vpmaddubsw, which saturates each pair a0*w0 + a1*w1 at 32767: 255*127*2 does not fit,
255*64*2 does. Full 8-bit weights cost the AVX2 kernels caption cosine 0.95 on a tiny CLIP and
image cosine 0.93 on lite-en (seen under qemu -cpu Haswell); with 7-bit weights both CPU kinds
give the same bits. uint8 weights (u8u8) would be exact too but run lite-en's convolutions
~5x slower and its captions ~1.5x slower here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from crossmodal.errors import UnknownModelError
from crossmodal.models.onnx.per_row_int8 import per_row_int8
from crossmodal.models.preprocess import images_to_tensor
from crossmodal.models.protocol import ImagePreprocessing

IMAGE_MODES = ("static", "dynamic", "none")
CALIBRATION_BATCH = 8
# What the manifest records as each graph's "int8_weights"; exports without it (made before
# weights were 7-bit) have full 8-bit int8 weights, except the dynamic image mode (uint8).
TEXT_WEIGHTS = "int8-7bit"
# What the manifest records as the text graph's "quantization"
TEXT_SCHEMES = {"per_row": "dynamic-per-row", "per_batch": "dynamic"}
IMAGE_WEIGHTS = {"static": "int8-7bit", "dynamic": "uint8"}


def prepared_for_quantization(source: Path, folder: Path) -> Path:
    """Shape inference + graph clean-up first, as onnxruntime recommends before quantising."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = folder / f"pre-{source.name}"
    quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    return target


# Without a list of MatMuls to keep fp32 (see below), the last 7 MatMul/Gemm nodes in graph
# order stay fp32: the rule before per-model lists. On lite-en's graph that is the head, 4 of
# the last layer's 6 weight MatMuls and its 2 attention products; it removed only ~6% of the
# int8 error (Flickr8k train captions).
FP32_TAIL_MATMULS = 7


def weight_matmuls(graph) -> dict[str, int]:
    """MatMul/Gemm nodes with a constant weight, and multiply-adds per row (in x out)."""
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    found = {}
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm") and node.input[1] in shapes:
            dims = shapes[node.input[1]]
            found[node.name] = int(np.prod(dims)) if len(dims) == 2 else 0
    return found


def per_batch_int8(prepared: Path, target: Path, exclude: Sequence[str] = (),
                   only: Sequence[str] | None = None) -> None:
    """ONNX Runtime's dynamic int8, one activation scale per batch tensor (`only`: quantise
    just these nodes); exports before per-row int8 used it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def ort_names(names: Sequence[str]) -> list[str]:
        # ORT rewrites a Gemm into NAME_MatMul + NAME_Add before it picks nodes, so a Gemm's
        # own name matches nothing (the old rule's head was quantised, never kept fp32)
        return [*names, *(f"{name}_MatMul" for name in names)]

    # per-channel weights: per-tensor int8 drops MiniLM's caption cosine to ~0.90
    quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8,
                     per_channel=True, reduce_range=True,
                     op_types_to_quantize=["MatMul", "Gemm"],
                     nodes_to_quantize=ort_names(only) if only is not None else None,
                     nodes_to_exclude=ort_names(exclude))


TEXT_INT8 = {"per_row": per_row_int8, "per_batch": per_batch_int8}


def quantize_text_int8(source: Path, target: Path, keep_fp32: Sequence[str] | None = None,
                       scheme: str = "per_row",
                       input_absmax: Mapping[str, np.ndarray] | None = None) -> list[str]:
    """int8 text graph; `keep_fp32` names the MatMul nodes that stay fp32 (a model's list,
    chosen on training data by tools/onnx_int8_sensitivity.py), else the last
    FP32_TAIL_MATMULS. `scheme`: "per_row" (the export's) or "per_batch". `input_absmax`:
    calibrated input ranges per MatMul name, to smooth those inputs (per_row only). Returns
    the names kept fp32."""
    import onnx

    with tempfile.TemporaryDirectory() as scratch:
        prepared = prepared_for_quantization(source, Path(scratch))
        graph = onnx.load(str(prepared)).graph
        if keep_fp32 is None:
            matmuls = [node.name for node in graph.node if node.op_type in ("MatMul", "Gemm")]
            keep_fp32 = matmuls[-FP32_TAIL_MATMULS:]
        else:
            _require_known(set(keep_fp32), graph, "the int8 fp32 list")
        if input_absmax:
            _require_known(set(input_absmax), graph, "the int8 input ranges")
        rewrite_text_int8(prepared, target, scheme, input_absmax, exclude=keep_fp32)
    return list(keep_fp32)


def rewrite_text_int8(prepared: Path, target: Path, scheme: str = "per_row",
                      input_absmax: Mapping[str, np.ndarray] | None = None,
                      exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
    """The `scheme`'s int8 rewrite of a prepared graph (every weight MatMul but `exclude`, or
    only `only`); with `input_absmax`, per-row int8 with those inputs smoothed."""
    if not input_absmax:
        TEXT_INT8[scheme](prepared, target, exclude=exclude, only=only)
    elif scheme != "per_row":
        raise ValueError("input smoothing is only implemented for per-row int8")
    else:
        per_row_int8(prepared, target, exclude=exclude, only=only,
                     input_absmax=dict(input_absmax))


def _require_known(names: set[str], graph, what: str) -> None:
    """A list made for another export of the graph must not silently do nothing."""
    missing = sorted(names - set(weight_matmuls(graph)))
    if missing:
        raise UnknownModelError(
            f"{what} name MatMuls that this text graph lacks: {', '.join(missing)}"
            " (re-run tools/onnx_int8_sensitivity.py for this model)")


class _ImageBatches:
    """The CalibrationDataReader onnxruntime asks for: preprocessed image batches, then None."""

    def __init__(self, images: Sequence[Image.Image], prep: ImagePreprocessing, input_name: str):
        self._batches: Iterator[dict] = (
            {input_name: images_to_tensor(images[i : i + CALIBRATION_BATCH], prep)
             .contiguous().numpy()}
            for i in range(0, len(images), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_image_int8(source: Path, target: Path, mode: str,
                        calibration: Sequence[Image.Image], prep: ImagePreprocessing) -> None:
    """int8 conv tower; `static` needs calibration images (a few dozen real photos)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    with tempfile.TemporaryDirectory() as scratch:
        prepared = prepared_for_quantization(source, Path(scratch))
        if mode == "dynamic":  # uint8 weights: ConvInteger runs u8u8, exact on every CPU
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QUInt8,
                             per_channel=True)
            return
        reader = _ImageBatches(list(calibration), prep, "pixel_values")
        quantize_static(str(prepared), str(target), reader, quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
