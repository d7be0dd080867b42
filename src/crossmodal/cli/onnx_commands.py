"""`crossmodal export-onnx`: a towers:/hf: CLIP encoder as ONNX graphs for ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import click

from crossmodal.cli.options import model_option
from crossmodal.models.registry import DEFAULT_TOWER

CALIBRATION_LIMIT = 64


def _calibration_images(folder: Path | None, limit: int) -> list:
    """Up to `limit` readable images of `folder` (default: the bundled samples), sorted."""
    from crossmodal.cli.demo import sample_images_dir
    from crossmodal.data.images import ImageLoadError, is_image_path, load_image
    from crossmodal.errors import BadInputError

    root = folder or sample_images_dir()
    paths = sorted(p for p in Path(root).rglob("*") if p.is_file() and is_image_path(p))
    images = []
    for path in paths:
        if len(images) >= limit:
            break
        try:
            images.append(load_image(path, target_size=512))
        except ImageLoadError:
            continue
    if not images:
        raise BadInputError(f"no readable images in {root} to calibrate the int8 image tower")
    return images


@click.command("export-onnx")
@model_option(dest="model_id", default=DEFAULT_TOWER,
              help="Encoder to export: towers:NAME or hf: CLIP (hub id or local dir).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder to create; use it as --model onnx:FOLDER.")
@click.option("--int8", is_flag=True,
              help="Quantise to int8: text with one activation scale per token (a caption's "
                   "vector does not depend on its batch), the image tower per --image-int8.")
@click.option("--image-int8", type=click.Choice(["static", "dynamic", "none"]),
              default="none", show_default=True,
              help="none: keep the image tower fp32 (int8 text only: lite-en loses ~0.8 "
                   "i2t R@1 on Flickr8k val); static: QDQ calibrated on real images, faster "
                   "images, another ~1.4 R@1; dynamic: ConvInteger, -5 R@1.")
@click.option("--calibration", type=click.Path(path_type=Path, exists=True, file_okay=False),
              default=None,
              help="Folder of photos like the ones you will index, to calibrate static int8 "
                   f"(first {CALIBRATION_LIMIT}; default: the bundled samples).")
@click.option("--overwrite", is_flag=True, help="Replace an existing export in --out.")
def export_onnx_command(model_id: str, out: Path, int8: bool, image_int8: str,
                        calibration: Path | None, overwrite: bool) -> None:
    """Export the image and text paths of an encoder (heads and L2 norm included) to ONNX,
    with a manifest and tokenizer, so `--model onnx:OUT` runs it with ONNX Runtime."""
    from crossmodal.models.onnx.export import export_encoder
    from crossmodal.models.registry import load_encoder

    if model_id.startswith("onnx:"):
        from crossmodal.errors import BadInputError

        raise BadInputError(f"{model_id} is already an ONNX export; pass a towers: or hf: model")
    encoder = load_encoder(model_id)
    images = (_calibration_images(calibration, CALIBRATION_LIMIT)
              if int8 and image_int8 == "static" else [])
    manifest = export_encoder(encoder, out, int8=int8, image_int8=image_int8,
                              calibration=images, overwrite=overwrite,
                              log=lambda message: click.echo(f"{message}…", err=True))
    quant = (f" (image: {manifest.image['quantization'] or 'fp32'}, "
             f"text: {manifest.text['quantization'] or 'fp32'})" if int8 else "")
    click.echo(f"exported {model_id} to {out} as {manifest.precision}{quant}; "
               f"use --model onnx:{out}")


COMMANDS = [export_onnx_command]
