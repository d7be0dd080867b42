"""Export an encoder's image and text paths to ONNX (dynamic batch and sequence axes) into a
folder with a manifest, tokenizer files and, optionally, int8 graphs. Nothing half-written:
the folder is built under a temporary name and renamed into place when complete."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image

from crossmodal.errors import BadInputError, missing_dependency
from crossmodal.models.onnx.graphs import ExportPlan, GraphSpec, export_plan
from crossmodal.models.onnx.manifest import MANIFEST_NAME, OnnxManifest
from crossmodal.models.onnx.per_row_int8 import SMOOTHING_ALPHA
from crossmodal.models.onnx.quantize import (
    FP32_TAIL_MATMULS,
    IMAGE_MODES,
    IMAGE_WEIGHTS,
    TEXT_SCHEMES,
    TEXT_WEIGHTS,
    quantize_image_int8,
    quantize_text_int8,
)
from crossmodal.models.protocol import Encoder
from crossmodal.paths import file_sha256
from crossmodal.storage import atomic_folder, atomic_save_json

OPSET = 17


def _require_onnx() -> None:
    for module, package in (("onnx", "onnx"), ("onnxruntime", "onnxruntime")):
        try:
            __import__(module)
        except ImportError as exc:
            raise missing_dependency(package) from exc


def export_module(module: torch.nn.Module, inputs: dict[str, torch.Tensor], path: Path,
                  output: str, dynamic_axes: dict) -> None:
    """`module` (run on `inputs`) as an ONNX graph at `path`, written beside it and renamed
    into place, so a reader never sees half a graph. Every graph the package exports (model
    exports, shared backbones, training features) goes through here."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about constant folding and asserts
        # The TorchScript-based exporter: no onnxscript needed, handles these models exactly.
        torch.onnx.export(
            module, tuple(inputs.values()), str(partial), dynamo=False,
            input_names=list(inputs), output_names=[output], dynamic_axes=dynamic_axes,
            opset_version=OPSET, do_constant_folding=True,
        )
    os.replace(partial, path)


def _export_graph(spec: GraphSpec, path: Path) -> None:
    export_module(spec.module, spec.inputs, path, "embeddings", spec.dynamic_axes)


def _versions() -> dict[str, str]:
    names = ("crossmodal", "torch", "onnx", "onnxruntime", "transformers")
    found = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def _check_arguments(out: Path, int8: bool, image_int8: str,
                     calibration: Sequence[Image.Image], overwrite: bool) -> None:
    if image_int8 not in IMAGE_MODES:
        raise BadInputError(f"image int8 mode must be one of {', '.join(IMAGE_MODES)}")
    if int8 and image_int8 == "static" and not calibration:
        raise BadInputError("static int8 for the image tower needs calibration images")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BadInputError(f"{out} exists and is not empty: pick another --out or --overwrite")


def _write_graphs(encoder: Encoder, plan: ExportPlan, work: Path, int8: bool, image_int8: str,
                  calibration: Sequence[Image.Image], log: Callable[[str], None]
                  ) -> tuple[str | None, str | None]:
    """work/image.onnx and work/text.onnx (fp32, or int8 where asked); returns the image and
    text quantization the manifest records (None: fp32)."""
    fp32 = work / "fp32"
    fp32.mkdir()
    log("exporting the image path")
    _export_graph(plan.image, fp32 / "image.onnx")
    log("exporting the text path")
    _export_graph(plan.text, fp32 / "text.onnx")
    image_q = text_q = None
    if int8:
        if image_int8 != "none":
            log(f"quantising the image path to int8 ({image_int8})")
            quantize_image_int8(fp32 / "image.onnx", work / "image.onnx", image_int8,
                                calibration, encoder.preprocessing)
            image_q = "static-qdq-per-channel" if image_int8 == "static" else "dynamic"
        log("quantising the text path to int8 (per-token activation scales)")
        text_q = _write_text_int8(plan, fp32 / "text.onnx", work / "text.onnx")
    for name in ("image.onnx", "text.onnx"):
        if not (work / name).exists():
            (fp32 / name).rename(work / name)
    shutil.rmtree(fp32)
    return image_q, text_q


def _write_text_int8(plan: ExportPlan, source: Path, target: Path) -> str:
    """The int8 text graph, with the model's fp32 list and input ranges where it ships them;
    records in the manifest what the graph is. Returns the text quantization."""
    choice = plan.int8_choice or {}
    ranges = choice.get("input_absmax")
    kept = quantize_text_int8(source, target, choice.get("text_fp32_matmuls"),
                              input_absmax=ranges)
    plan.text_meta["fp32_matmuls"] = kept  # what the graph is: these stayed fp32
    plan.text_meta["fp32_matmuls_chosen"] = choice.get(
        "chosen_on", f"the last {FP32_TAIL_MATMULS} MatMul nodes (no list for this model)")
    if ranges:
        entry = choice["input_ranges"]
        plan.text_meta["smoothing"] = {
            "alpha": SMOOTHING_ALPHA, "matmuls": len(set(ranges) - set(kept)),  # int8 ones
            "calibrated_on": entry.get("calibrated_on", "not recorded")}
    return TEXT_SCHEMES["per_row"]


def _write_text_files(plan: ExportPlan, work: Path) -> list[str]:
    """The tokenizer and gram bag beside the graphs; returns the files the manifest hashes."""
    if plan.tokenizer is not None:
        plan.tokenizer.save_pretrained(str(work / plan.text_meta["tokenizer"]))
    graph_files = ["image.onnx", "text.onnx"]
    if plan.grams is not None:  # the gram bag runs beside the text graph (a table lookup)
        plan.grams.save(work / "grams.safetensors")
        plan.text_meta["grams"] = "grams.safetensors"
        graph_files.append("grams.safetensors")
    return graph_files


def export_encoder(encoder: Encoder, out: Path, int8: bool = False, image_int8: str = "none",
                   calibration: Sequence[Image.Image] = (), overwrite: bool = False,
                   log: Callable[[str], None] = lambda message: None) -> OnnxManifest:
    """Write `out/` (image.onnx, text.onnx, tokenizer/, onnx.json) for a towers: or hf: encoder.

    int8: text graph dynamically quantised; image graph per `image_int8` (static QDQ calibrated
    on `calibration` images, dynamic, or none).
    """
    _require_onnx()
    out = Path(out)
    _check_arguments(out, int8, image_int8, calibration, overwrite)
    plan = export_plan(encoder)
    with atomic_folder(out) as work:
        image_q, text_q = _write_graphs(encoder, plan, work, int8, image_int8, calibration, log)
        graph_files = _write_text_files(plan, work)
        manifest = OnnxManifest(
            source_model=encoder.model_id, source_fingerprint=encoder.fingerprint,
            dim=int(encoder.dim), context_length=int(encoder.context_length),
            preprocessing=encoder.preprocessing.as_dict(),
            image={"file": "image.onnx", "quantization": image_q,
                   **({"int8_weights": IMAGE_WEIGHTS[image_int8]} if image_q else {})},
            text={**plan.text_meta, "file": "text.onnx", "quantization": text_q,
                  **({"int8_weights": TEXT_WEIGHTS} if text_q else {})},
            precision="int8" if int8 else "fp32",
            files={name: file_sha256(work / name) for name in graph_files},
            versions=_versions(),
        )
        atomic_save_json(work / MANIFEST_NAME, manifest.to_dict())
    return manifest
